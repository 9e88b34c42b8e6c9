#!/usr/bin/env python3
"""The monitoring pack's checks (ctest label deploy; docs/MONITORING.md#tests).

  monitoring_test.py rules ROOT
      promtool check rules + promtool test rules (tests/monitoring/*.test.yaml);
      every alert has severity, for/annotations, a runbook_url whose anchor is
      a heading of docs/OPERATIONS.md, a firing case in the tests; and each
      alert's negative cases are real: the alert with its threshold loosened
      (every comparison made `>= 0`) must fail the tests.
  monitoring_test.py live ROOT SLUICE
      starts the daemon (Kafka and MQTT enabled toward a closed loopback port,
      so every series exists) and a Prometheus scraping it with rules.yaml
      loaded; every dashboard expression (Grafana variables filled in) and
      every rule expression is queried through /api/v1/query and must succeed;
      dashboard queries must return data unless they name a series that only
      appears when a reason first occurs; every metric name they use must be on
      the daemon's /metrics (or be one of those few, found in the C sources);
      the rules load with health ok; the dashboards are up to date with
      deploy/monitoring/grafana/generate.py.
  monitoring_test.py k8s ROOT
      the PrometheusRule of the openshift-monitoring overlay is up to date
      with rules.yaml (deploy/monitoring/prometheusrule.py --check) and, in
      the overlay's kubectl render, carries exactly rules.yaml's groups; the
      ServiceMonitor and PrometheusRule match a closed subset of their CRD
      schemas (tests/monitoring/crd_schemas.yaml: kubernetes-validate has no
      CRDs) and broken copies do not; the other objects pass
      kubernetes-validate; the ServiceMonitor selects one Service whose named
      port leads to a named container port.

Exit 77 (skipped, shown by ctest) when promtool/prometheus or PyYAML is missing.
"""
import copy
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(1 if FAILS else 77)


FAILS = []

try:
    import yaml
except ImportError:
    skip("PyYAML missing (python3-yaml)")


def fail(msg):
    FAILS.append(msg)
    print(f"FAIL: {msg}")


def ok(msg):
    print(f"ok: {msg}")


def need(tool):
    path = shutil.which(tool)
    if not path:
        skip(f"{tool} not found (Debian package prometheus; scripts/deps.sh)")
    return path


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(md_path):
    out, in_code = set(), False
    for line in open(md_path, encoding="utf-8"):
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            out.add(slug(m.group(1)))
    return out


def load_rules(root):
    return yaml.safe_load(open(os.path.join(root, "deploy/monitoring/rules.yaml")))


def alerts_of(doc):
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def promtool_test(promtool, tests, cwd=None):
    return subprocess.run([promtool, "test", "rules", *tests], capture_output=True,
                          text=True, cwd=cwd)


def mode_rules(root):
    promtool = need("promtool")
    rules = os.path.join(root, "deploy/monitoring/rules.yaml")
    tests = sorted(glob.glob(os.path.join(root, "tests/monitoring/*.test.yaml")))
    p = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True)
    (ok if p.returncode == 0 else fail)(f"promtool check rules: {p.stdout.strip()} {p.stderr.strip()}")
    p = promtool_test(promtool, tests)
    if p.returncode == 0:
        ok(f"promtool test rules {' '.join(os.path.basename(t) for t in tests)}")
    else:
        fail(f"promtool test rules:\n{p.stdout}{p.stderr}")

    doc = load_rules(root)
    ops = os.path.join(root, "docs/OPERATIONS.md")
    have = anchors(ops)
    names = [a["alert"] for a in alerts_of(doc)]
    if len(set(names)) != len(names):
        fail("alert names repeat")
    fired = {}
    for t in tests:
        for case in yaml.safe_load(open(t)).get("tests", []):
            for art in case.get("alert_rule_test", []):
                if art.get("exp_alerts"):
                    fired[art["alertname"]] = True
    for a in alerts_of(doc):
        n = a["alert"]
        sev = a.get("labels", {}).get("severity")
        if sev not in ("warning", "critical"):
            fail(f"{n}: severity {sev!r}, want warning or critical")
        ann = a.get("annotations", {})
        for k in ("summary", "description", "runbook_url"):
            if not ann.get(k):
                fail(f"{n}: no {k} annotation")
        url = ann.get("runbook_url", "")
        m = re.fullmatch(r"docs/OPERATIONS\.md#([\w-]+)", url)
        if not m:
            fail(f"{n}: runbook_url {url!r} is not docs/OPERATIONS.md#anchor")
        elif m.group(1) not in have:
            fail(f"{n}: runbook anchor #{m.group(1)} is no heading of docs/OPERATIONS.md")
        if not fired.get(n):
            fail(f"{n}: no test case fires it")
    # Links inside the runbook section resolve too.
    text = open(ops, encoding="utf-8").read()
    section = text[text.find("## Alerts and runbooks"):]
    for link in re.findall(r"\]\(#([\w-]+)\)", section):
        if link not in have:
            fail(f"docs/OPERATIONS.md: link #{link} in Alerts and runbooks has no heading")
    ok(f"{len(names)} alerts: severity, annotations, runbook anchors, a firing case each")

    check_scrape_configs(root, promtool)

    # The negative cases bite: loosen one alert at a time; the tests must fail.
    with tempfile.TemporaryDirectory(prefix="sl_mon_") as work:
        os.makedirs(os.path.join(work, "deploy/monitoring"))
        os.makedirs(os.path.join(work, "tests/monitoring"))
        for t in tests:
            shutil.copy(t, os.path.join(work, "tests/monitoring"))
        wtests = sorted(glob.glob(os.path.join(work, "tests/monitoring/*.test.yaml")))
        for n in names:
            d = copy.deepcopy(doc)
            for a in alerts_of(d):
                if a["alert"] == n:
                    e = re.sub(r"(==|>)\s*[0-9.]+\b", ">= 0", a["expr"])
                    e = re.sub(r">\s*on \(job, instance\) [0-9.]+ \*", "> on (job, instance) 0 *", e)
                    if e == a["expr"]:
                        fail(f"{n}: no threshold to loosen in {e!r}")
                    a["expr"] = e
            with open(os.path.join(work, "deploy/monitoring/rules.yaml"), "w") as f:
                yaml.safe_dump(d, f, sort_keys=False)
            p = promtool_test(promtool, wtests)
            if p.returncode == 0:
                fail(f"{n}: loosened to fire always, the tests still pass (no real negative case)")
        ok("every alert loosened to `>= 0` fails the tests (the near misses are real)")


def check_scrape_configs(root, promtool):
    """deploy/monitoring/scrape/*.yml pass promtool check config (syntax:
    the files they name exist only on a real box). Debian's Prometheus is
    built without Kubernetes discovery, so kubernetes_sd_configs blocks are
    checked for shape here and replaced by a static target for promtool."""
    for path in sorted(glob.glob(os.path.join(root, "deploy/monitoring/scrape/*.yml"))):
        doc = yaml.safe_load(open(path))
        for sc in doc.get("scrape_configs", []):
            for k in sc.pop("kubernetes_sd_configs", []):
                if k.get("role") not in ("node", "service", "pod", "endpoints",
                                         "endpointslice", "ingress"):
                    fail(f"{path}: kubernetes_sd_configs role {k.get('role')!r}")
                if set(k) - {"role", "namespaces", "selectors", "api_server", "tls_config"}:
                    fail(f"{path}: kubernetes_sd_configs keys {sorted(k)}")
                names = k.get("namespaces", {}).get("names", [])
                if not all(isinstance(n, str) for n in names):
                    fail(f"{path}: kubernetes_sd_configs namespaces.names")
                sc.setdefault("static_configs", []).append({"targets": ["127.0.0.1:9100"]})
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as f:
            yaml.safe_dump(doc, f)
            f.flush()
            p = subprocess.run([promtool, "check", "config", "--syntax-only", f.name],
                               capture_output=True, text=True)
        if p.returncode:
            fail(f"promtool check config {path}: {p.stdout}{p.stderr}")
        else:
            ok(f"promtool check config --syntax-only {os.path.relpath(path, root)}")


# ---------------------------------------------------------------- live mode
# Series that appear only when their reason first occurs (OPERATIONS.md,
# Metrics): accepted without being on /metrics if the sources register them.
LAZY = {"sluice_ingest_rejects_total", "sluice_store_write_errors_total",
        "sluice_mqtt_decode_errors_total"}
# Series Prometheus itself makes.
PROM = {"up", "ALERTS", "ALERTS_FOR_STATE"}
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}
GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric_names(expr):
    """Metric names in a PromQL expression: identifiers that are not
    functions, keywords, label names or durations."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)                 # strings
    e = re.sub(r"\{[^}]*\}", "{}", e)                             # matchers
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)                             # ranges
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\(?)", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def fill_vars(expr, variables):
    def sub(m):
        name = m.group(1) or m.group(2)
        return GRAFANA_VARS.get(name, variables.get(name, ".+"))
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", sub, expr)


def dashboard_exprs(path):
    board = json.load(open(path))
    variables = {v["name"]: ".+" for v in board.get("templating", {}).get("list", [])}
    ds = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    if not ds or ds[0].get("query") != "prometheus":
        fail(f"{path}: no Prometheus datasource variable")
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                if p.get("datasource", {}).get("uid") != "${datasource}":
                    fail(f"{path}: panel {p.get('title')!r} not on the datasource variable")
                out.append((p.get("title"), t["expr"]))
    walk(board["panels"])
    for v in board["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*\w+\)", q)
            if m:
                out.append((f"variable {v['name']}", m.group(1)))
    return [(title, fill_vars(e, variables)) for title, e in out]


def start(cmd, log):
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(what, fn, deadline_s=30, proc=None, log=None):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            break
        try:
            v = fn()
            if v:
                return v
        except Exception:
            pass
        time.sleep(0.1)
    if log:
        sys.stdout.write(open(log).read()[-4000:])
    raise SystemExit(f"FAIL: {what}")


def live_daemon(root, sluice, work):
    dead = free_port()  # bound and closed: connection refused
    cfg = open(os.path.join(root, "tests/monitoring/daemon.yaml.in")).read()
    cfg = cfg.replace("@DIR@", work).replace("@ADMIN@", "127.0.0.1:0").replace("@DEAD@", str(dead))
    path = os.path.join(work, "sluice.yaml")
    open(path, "w").write(cfg)
    log = os.path.join(work, "sluice.log")
    proc = start([sluice, "run", "-c", path], open(log, "w"))

    def ready():
        m = re.search(r" ready: .*, admin [^ ]* \(port (\d+)\)", open(log).read())
        return m and int(m.group(1))
    return proc, wait_for("sluice not ready", ready, proc=proc, log=log)


def live_prometheus(root, work, admin, rules_path):
    prom = need("prometheus")
    cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
           "rule_files": [rules_path],
           "scrape_configs": [{"job_name": "sluice",
                               "static_configs": [{"targets": [f"127.0.0.1:{admin}"]}]}]}
    path = os.path.join(work, "prometheus.yml")
    yaml.safe_dump(cfg, open(path, "w"))
    for attempt in range(5):
        port = free_port()
        log = os.path.join(work, f"prometheus{attempt}.log")
        proc = start([prom, f"--config.file={path}", f"--storage.tsdb.path={work}/tsdb{attempt}",
                      f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                     open(log, "w"))
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for("prometheus not ready", lambda: http_get(base + "/-/ready"), proc=proc)
            return proc, base
        except SystemExit:
            stop(proc)
            if "address already in use" not in open(log).read():
                sys.stdout.write(open(log).read()[-4000:])
                raise
    raise SystemExit("FAIL: no free port for prometheus")


def query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        return json.loads(http_get(url))
    except urllib.error.HTTPError as e:
        return json.loads(e.read().decode())


def mode_live(root, sluice):
    need("prometheus")
    p = subprocess.run([sys.executable, os.path.join(root, "deploy/monitoring/grafana/generate.py"),
                        "--check"], capture_output=True, text=True)
    (ok if p.returncode == 0 else fail)(f"dashboards up to date with generate.py {p.stdout.strip()}")
    sources = ""
    for d in ("daemon", "ingest", "sync", "telemetry", "store"):
        for f in glob.glob(os.path.join(root, d, "**/*.c"), recursive=True):
            sources += open(f, encoding="utf-8", errors="replace").read()
    for n in LAZY:
        if f'"{n}"' not in sources:
            fail(f"{n}: listed as appearing on first occurrence, but no source registers it")
    work = tempfile.mkdtemp(prefix="sl_mon_live_")
    daemon = promp = None
    try:
        daemon, admin = live_daemon(root, sluice, work)
        text = http_get(f"http://127.0.0.1:{admin}/metrics")
        exported = {re.match(r"[a-zA-Z_:][\w:]*", l).group(0)
                    for l in text.splitlines() if l and not l.startswith("#")}
        ok(f"daemon on admin port {admin} exports {len(exported)} series names")
        promp, base = live_prometheus(root, work, admin,
                                      os.path.join(root, "deploy/monitoring/rules.yaml"))
        # Two scrapes at least, so rate() over them has data.
        wait_for("prometheus did not scrape sluice twice",
                 lambda: (r := query(base, 'count_over_time(up{job="sluice"}[1m])'))["data"]["result"]
                 and float(r["data"]["result"][0]["value"][1]) >= 3
                 and query(base, 'up{job="sluice"}')["data"]["result"][0]["value"][1] == "1",
                 proc=promp)
        exprs = []
        for path in sorted(glob.glob(os.path.join(root, "deploy/monitoring/grafana/*.json"))):
            exprs += [(os.path.basename(path), t, e, True) for t, e in dashboard_exprs(path)]
        for a in alerts_of(load_rules(root)):
            exprs.append(("rules.yaml", a["alert"], a["expr"], False))
        n_ok = 0
        for src, title, e, want_data in exprs:
            r = query(base, e)
            if r.get("status") != "success":
                fail(f"{src} {title!r}: {r.get('errorType')}: {r.get('error')}\n  {e}")
                continue
            names = metric_names(e)
            unknown = sorted(n for n in names if n not in exported and n not in LAZY and n not in PROM)
            if unknown:
                fail(f"{src} {title!r}: not exported by the daemon: {', '.join(unknown)}")
                continue
            if want_data and not (names & LAZY) and not r["data"]["result"]:
                fail(f"{src} {title!r}: no data from a live daemon (a label or matcher is wrong?)\n  {e}")
                continue
            n_ok += 1
        ok(f"{n_ok} of {len(exprs)} expressions parse, name exported metrics, and answer")
        rules = json.loads(http_get(base + "/api/v1/rules"))["data"]["groups"]
        loaded = [r for g in rules for r in g["rules"]]
        bad = [r["name"] for r in loaded if r.get("health") not in ("ok", "unknown") or r.get("lastError")]
        want = len(alerts_of(load_rules(root)))
        if len(loaded) != want or bad:
            fail(f"prometheus loaded {len(loaded)} of {want} rules; unhealthy: {bad}")
        else:
            ok(f"prometheus evaluates all {want} rules on the live daemon")
    finally:
        stop(promp)
        stop(daemon)
        if not FAILS:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"(kept {work})")


def cr_schema(root, kind):
    doc = yaml.safe_load(open(os.path.join(root, "tests/monitoring/crd_schemas.yaml")))
    schema = dict(doc[kind])
    schema["definitions"] = doc["definitions"]
    return schema


def mode_k8s(root):
    gen = os.path.join(root, "deploy/monitoring/prometheusrule.py")
    p = subprocess.run([sys.executable, gen, "--check"], capture_output=True, text=True)
    (ok if p.returncode == 0 else fail)(f"prometheusrule.yaml up to date with rules.yaml {p.stdout.strip()}")
    kubectl = shutil.which(os.environ.get("KUBECTL", "kubectl"))
    if not kubectl:
        skip("kubectl not found: the overlay is not rendered")
    try:
        import jsonschema
    except ImportError:
        skip("jsonschema missing (comes with kubernetes-validate, scripts/deps.sh)")
    overlay = os.path.join(root, "deploy/kustomize/overlays/openshift-monitoring")
    p = subprocess.run([kubectl, "kustomize", overlay], capture_output=True, text=True)
    if p.returncode:
        fail(f"kubectl kustomize {overlay}: {p.stderr}")
        return
    docs = list(yaml.safe_load_all(p.stdout))
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    rules = load_rules(root)
    pr, sm = by_kind.get("PrometheusRule", []), by_kind.get("ServiceMonitor", [])
    if len(pr) != 1 or len(sm) != 1:
        fail(f"render has {len(pr)} PrometheusRule and {len(sm)} ServiceMonitor, want 1 each")
        return
    pr, sm = pr[0], sm[0]
    if pr["spec"]["groups"] == rules["groups"]:
        ok(f"rendered PrometheusRule's groups equal rules.yaml's ({len(rules['groups'])} groups)")
    else:
        fail("rendered PrometheusRule's groups differ from rules.yaml's")
    # Shape: the CRs against the closed subset schema; a broken copy must fail.
    for obj in (pr, sm):
        errs = list(jsonschema.Draft7Validator(cr_schema(root, obj["kind"])).iter_errors(obj))
        if errs:
            fail(f"{obj['kind']}: {'; '.join(e.message for e in errs[:3])}")
        else:
            ok(f"{obj['kind']} matches tests/monitoring/crd_schemas.yaml")
    broken = copy.deepcopy(sm)
    broken["spec"]["endpoints"][0]["tlsconfig"] = broken["spec"]["endpoints"][0].pop("tlsConfig")
    broken_pr = copy.deepcopy(pr)
    del broken_pr["spec"]["groups"][0]["rules"][0]["expr"]
    for obj in (broken, broken_pr):
        if jsonschema.Draft7Validator(cr_schema(root, obj["kind"])).is_valid(obj):
            fail(f"a broken {obj['kind']} passes the schema")
    # The standard objects of the render against the bundled Kubernetes schemas.
    try:
        import kubernetes_validate as kv
        for d in docs:
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                continue
            kv.validate(d, "1.32.0", strict=True)
        ok("the overlay's other objects validate (kubernetes-validate, Kubernetes 1.32)")
    except ImportError:
        skip("kubernetes-validate missing (scripts/deps.sh)")
    except Exception as e:  # ValidationError and friends
        fail(f"kubernetes-validate: {e}")
    # The ServiceMonitor selects one Service, which has the named port, whose
    # target is a named container port of the pods.
    labels = sm["spec"]["selector"]["matchLabels"]
    svcs = [s for s in by_kind.get("Service", [])
            if all(s["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())]
    port = sm["spec"]["endpoints"][0]["port"]
    if len(svcs) != 1:
        fail(f"ServiceMonitor selects {len(svcs)} Services, want exactly 1")
        return
    sp = [x for x in svcs[0]["spec"]["ports"] if x.get("name") == port]
    if not sp:
        fail(f"Service {svcs[0]['metadata']['name']} has no port named {port!r}")
        return
    target = sp[0].get("targetPort")
    for ss in by_kind.get("StatefulSet", []):
        cports = [c.get("name") for ctr in ss["spec"]["template"]["spec"]["containers"]
                  for c in ctr.get("ports", [])]
        if target not in cports:
            fail(f"StatefulSet {ss['metadata']['name']}: no container port named {target!r}")
    if sm["metadata"].get("namespace") != svcs[0]["metadata"].get("namespace"):
        fail("ServiceMonitor and its Service in different namespaces")
    ok(f"ServiceMonitor -> Service {svcs[0]['metadata']['name']} port {port} -> container port {target}")


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    mode, root = sys.argv[1], os.path.abspath(sys.argv[2])
    if mode == "rules":
        mode_rules(root)
    elif mode == "live":
        mode_live(root, sys.argv[3])
    elif mode == "k8s":
        mode_k8s(root)
    else:
        print(__doc__)
        return 2
    if FAILS:
        print(f"{len(FAILS)} failure(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
