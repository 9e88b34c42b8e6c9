// Transactional-id ACLs for `sluice fleet enroll --txn-acl-helper`
// (docs/ENROLMENT.md): librdkafka before 2.6 (Debian 12 ships 2.0) cannot
// name that resource type, and a kafka-acls.sh run per node costs a JVM
// start (3-4 s) per approval. This helper starts once and serves the
// service over stdin/stdout, one line per batch:
//   add PRINCIPAL=TXN_ID [PRINCIPAL=TXN_ID...]      -> "ok" | "error MESSAGE"
//   remove PRINCIPAL=TXN_ID [PRINCIPAL=TXN_ID...]   -> "ok" | "error MESSAGE"
// Each pair gets (or loses) WRITE and DESCRIBE on that id, literal, host *.
// Run with Kafka's client jars (single-file source launch, Java >= 11):
//   java -cp "/opt/kafka/libs/*" TxnAclHelper.java BOOTSTRAP [ADMIN.properties]
import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AccessControlEntryFilter;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourcePatternFilter;
import org.apache.kafka.common.resource.ResourceType;

public class TxnAclHelper {
  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      System.err.println("usage: TxnAclHelper BOOTSTRAP [ADMIN.properties]");
      System.exit(2);
    }
    Properties p = new Properties();
    if (args.length > 1)
      try (FileInputStream in = new FileInputStream(args[1])) {
        p.load(in);
      }
    p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    AclOperation[] ops = {AclOperation.WRITE, AclOperation.DESCRIBE};
    try (Admin a = Admin.create(p);
        BufferedReader r = new BufferedReader(new InputStreamReader(System.in))) {
      System.out.println("ready");
      System.out.flush();
      for (String line; (line = r.readLine()) != null;) {
        String[] w = line.trim().split("\\s+");
        try {
          if (w.length < 2 || !(w[0].equals("add") || w[0].equals("remove")))
            throw new IllegalArgumentException("expected add|remove PRINCIPAL=ID...");
          List<AclBinding> add = new ArrayList<>();
          List<AclBindingFilter> del = new ArrayList<>();
          for (int i = 1; i < w.length; i++) {
            int eq = w[i].lastIndexOf('=');
            if (eq <= 0)
              throw new IllegalArgumentException("expected PRINCIPAL=ID: " + w[i]);
            String who = w[i].substring(0, eq), id = w[i].substring(eq + 1);
            for (AclOperation op : ops) {
              if (w[0].equals("add"))
                add.add(new AclBinding(
                    new ResourcePattern(ResourceType.TRANSACTIONAL_ID, id, PatternType.LITERAL),
                    new AccessControlEntry(who, "*", op, AclPermissionType.ALLOW)));
              else
                del.add(new AclBindingFilter(
                    new ResourcePatternFilter(ResourceType.TRANSACTIONAL_ID, id, PatternType.LITERAL),
                    new AccessControlEntryFilter(who, "*", op, AclPermissionType.ALLOW)));
            }
          }
          if (!add.isEmpty())
            a.createAcls(add).all().get();
          if (!del.isEmpty())
            a.deleteAcls(del).all().get();
          System.out.println("ok");
        } catch (Exception e) {
          String m = e.getCause() != null ? e.getCause().toString() : e.toString();
          System.out.println("error " + m.replace('\n', ' '));
        }
        System.out.flush();
      }
    }
  }
}
