// deploy/kafka/AclHelper.java: transactional-id ACLs for the enrolment
// service (docs/ENROLMENT.md), as one long-lived process speaking lines on
// stdin/stdout. Why it exists: Debian 12's librdkafka (2.0) cannot name a
// TRANSACTIONAL_ID resource in CreateAcls, and starting kafka-acls.sh (a
// JVM) for every approved node takes seconds each; this keeps one Kafka
// Admin client open and answers each node in one CreateAcls round trip.
//
// Run (Java 11+ source-file mode, Kafka's jars on the class path):
//   java -cp 'KAFKA/libs/*' AclHelper.java --bootstrap-server HOST:PORT
//        [--command-config admin.properties]
// Protocol: it prints "ready" once connected; then for each line
//   add PRINCIPAL TXNID...      WRITE and DESCRIBE on each id (LITERAL)
//   remove PRINCIPAL TXNID...   the same ACLs removed
// it prints "ok" or "error REASON" (one line).
import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class AclHelper {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--bootstrap-server") && i + 1 < args.length) {
        p.put("bootstrap.servers", args[++i]);
      } else if (args[i].equals("--command-config") && i + 1 < args.length) {
        try (FileInputStream f = new FileInputStream(args[++i])) {
          p.load(f);
        }
      } else {
        System.err.println("usage: AclHelper --bootstrap-server HOST:PORT [--command-config FILE]");
        System.exit(2);
      }
    }
    try (Admin admin = Admin.create(p);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in))) {
      admin.describeCluster().clusterId().get(60, TimeUnit.SECONDS);
      System.out.println("ready");
      System.out.flush();
      String line;
      while ((line = in.readLine()) != null) {
        String[] f = line.trim().split("\\s+");
        if (f.length < 3 || !(f[0].equals("add") || f[0].equals("remove"))) {
          System.out.println("error expected: add|remove PRINCIPAL TXNID...");
          System.out.flush();
          continue;
        }
        List<AclBinding> b = new ArrayList<>();
        for (int i = 2; i < f.length; i++) {
          for (AclOperation op : new AclOperation[] {AclOperation.WRITE, AclOperation.DESCRIBE}) {
            b.add(new AclBinding(
                new ResourcePattern(ResourceType.TRANSACTIONAL_ID, f[i], PatternType.LITERAL),
                new AccessControlEntry(f[1], "*", op, AclPermissionType.ALLOW)));
          }
        }
        try {
          if (f[0].equals("add")) {
            admin.createAcls(b).all().get(30, TimeUnit.SECONDS);
          } else {
            List<AclBindingFilter> fl = new ArrayList<>();
            for (AclBinding x : b) {
              fl.add(x.toFilter());
            }
            admin.deleteAcls(fl).all().get(30, TimeUnit.SECONDS);
          }
          System.out.println("ok");
        } catch (Exception e) {
          String m = String.valueOf(e.getMessage()).replace('\n', ' ');
          System.out.println("error " + m);
        }
        System.out.flush();
      }
    }
  }
}
