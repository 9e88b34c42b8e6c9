#!/usr/bin/env python3
"""The flightctl afterUpdating rules run against stub commands.

A small runner follows the documented semantics of the agent (managing-
devices.md "Using Device Lifecycle Hooks"): rule files in lexical order,
actions in sequence, an action runs only when every `if` path condition
matches a changed file (a directory condition ends with /; `op` filters
created/updated/removed), `run` is split into arguments and executed without
a shell and with only `envVars` as its environment, `timeout` (default 10 s)
kills it, and the first failing action stops the rest and means "roll the
update back". The commands are stubs that log their arguments and
environment and exit as told, or hang. Timeouts are scaled down 100x.

Gateway rule (deploy/flightctl/hooks.d/afterupdating/50-sluice.yaml): a
changed /etc/sluice/ runs `sluice ctl reload --wait-healthy`; its failure
rolls back and skips the rest; a changed unit drop-in runs `systemctl
restart`; a hung restart is killed and rolls back; unrelated changes run
nothing. With a sluice binary that has `ctl`, the reload leg runs the real
command against a running daemon: a good config passes, a broken one rolls
back. Without it that leg uses a stub and says so.

Quadlet gateway rule (inline in fleet-gateway-quadlet.yaml): `podman exec
sluice sluice ctl reload --wait-healthy`; its failure rolls back.

MicroShift rule (inline in deploy/flightctl/fleet-microshift.yaml): `kubectl
apply -k` then `rollout status`, both with KUBECONFIG; a failed rollout
rolls back; a failed apply skips the rollout wait.

  hook_test.py [SLUICE_BINARY]          exit 77 without python3-yaml
"""
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

try:
    import yaml
except ImportError:
    print("SKIP: python3-yaml not installed")
    sys.exit(77)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
FC = os.path.join(ROOT, "deploy", "flightctl")
failures = []
SCALE = 0.01


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def seconds(d):
    n, unit = int(d[:-1]), d[-1]
    return n * {"s": 1, "m": 60, "h": 3600}[unit]


def matches(cond, changed):
    p, ops = cond["path"], cond.get("op", ["created", "updated", "removed"])
    for f, op in changed.items():
        hit = f.startswith(p) if p.endswith("/") else f == p
        if hit and op in ops:
            return True
    return False


def run_rules(rules, changed, remap):
    """Returns (ok, list of argv run). remap: absolute command -> stub."""
    ran = []
    for action in rules:
        if not all(matches(c, changed) for c in action.get("if", [])):
            continue
        argv = shlex.split(action["run"])
        argv[0] = remap.get(argv[0], argv[0])
        argv = [remap.get(a, a) for a in argv]
        ran.append(argv)
        t = seconds(action.get("timeout", "10s")) * SCALE
        try:
            p = subprocess.run(argv, env=dict(action.get("envVars", {})),
                               cwd=action.get("workDir", "/"), timeout=max(t, 0.5),
                               capture_output=True, text=True)
            if p.returncode != 0:
                return False, ran
        except subprocess.TimeoutExpired:
            return False, ran
    return True, ran


class Stubs:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "stubs")
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "calls.log")

    def make(self, name):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(f"""#!/bin/sh
printf '%s KUBECONFIG=%s\\n' "{name} $*" "${{KUBECONFIG-}}" >> '{self.log}'
rc=$(cat '{path}.rc' 2>/dev/null || echo 0)
if [ "$rc" = hang ]; then exec /bin/sleep 1000; fi
exit "$rc"
""")
        os.chmod(path, 0o755)
        return path

    def set(self, name, rc):
        with open(os.path.join(self.dir, name + ".rc"), "w") as f:
            f.write(str(rc))

    def calls(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            out = f.read().splitlines()
        os.unlink(self.log)
        return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def has_ctl(sluice):
    if not sluice:
        return False
    p = subprocess.run([sluice, "ctl"], capture_output=True, text=True)
    return "unknown command" not in (p.stdout + p.stderr)


def gateway(sluice, tmp):
    with open(os.path.join(FC, "hooks.d", "afterupdating", "50-sluice.yaml")) as f:
        rules = yaml.safe_load(f)
    st = Stubs(tmp)
    stub_sluice, stub_systemctl = st.make("sluice"), st.make("systemctl")
    cfg = os.path.join(tmp, "etc-sluice", "sluice.yaml")
    os.makedirs(os.path.dirname(cfg))
    remap = {"/usr/bin/sluice": stub_sluice, "/usr/bin/systemctl": stub_systemctl,
             "/etc/sluice/sluice.yaml": cfg}
    conf = {"/etc/sluice/sluice.yaml": "updated"}
    dropin = {"/etc/systemd/system/sluice.service.d/50-fleet.conf": "created"}

    ok, ran = run_rules(rules, conf, remap)
    calls = st.calls()
    check(ok and len(calls) == 1 and calls[0].startswith("sluice ctl reload --wait-healthy 60s -c"),
          f"gateway: config updated -> sluice ctl reload only, passes ({calls})")
    st.set("sluice", 1)
    ok, ran = run_rules(rules, {**conf, **dropin}, remap)
    calls = st.calls()
    check(not ok and len(calls) == 1,
          f"gateway: reload fails -> roll back, restart skipped ({calls})")
    st.set("sluice", 0)
    ok, ran = run_rules(rules, dropin, remap)
    calls = st.calls()
    check(ok and calls == ["systemctl restart sluice.service KUBECONFIG="],
          f"gateway: drop-in created -> systemctl restart sluice.service only ({calls})")
    st.set("systemctl", "hang")
    t0 = time.monotonic()
    ok, ran = run_rules(rules, {"/etc/systemd/system/sluice.service.d/50-fleet.conf": "removed"}, remap)
    dt = time.monotonic() - t0
    st.calls()
    check(not ok and dt < 10, f"gateway: restart hangs -> killed at its (scaled) timeout, roll back ({dt:.1f} s)")
    st.set("systemctl", 0)
    ok, ran = run_rules(rules, {"/etc/chrony.conf": "updated", "/etc/sluice/sluice.yaml": "removed"}, remap)
    check(ok and not st.calls(), "gateway: unrelated change, or the config removed: nothing runs")

    # The real `sluice ctl` when this build has it.
    if not has_ctl(sluice):
        print("note: this sluice has no `ctl` command: the reload leg ran against a stub only")
        return
    data, admin = os.path.join(tmp, "data"), free_port()
    # POST /v1/reload needs the admin credential; the hook's `run` has no
    # shell or environment, so ctl reads admin.token beside the config.
    token = os.urandom(16).hex()
    tok = os.path.join(os.path.dirname(cfg), "admin.token")
    with open(os.open(tok, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(token + "\n")
    good = f"""node:
  id: hook-test
  data_dir: {data}
listeners:
  native:
    tcp: ""
  http:
    address: 127.0.0.1:{free_port()}
admin:
  address: 127.0.0.1:{admin}
  token_sha256: {hashlib.sha256(token.encode()).hexdigest()}
log:
  level: info
streams:
  - name: t
"""
    with open(cfg, "w") as f:
        f.write(good)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    d = subprocess.Popen([sluice, "run", "-c", cfg], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, ready = time.monotonic() + 30, False
        while not ready and d.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                    ready = r.status == 200
            except Exception:
                time.sleep(0.05)  # polling /readyz, with a deadline
        check(ready, "real ctl: daemon ready")
        remap["/usr/bin/sluice"] = os.path.abspath(sluice)
        global SCALE
        SCALE = 1
        with open(cfg, "w") as f:
            f.write(good.replace("level: info", "level: debug"))
        ok, ran = run_rules(rules, conf, remap)
        check(ok, f"real ctl: a good new config is reloaded and healthy ({ran[:1]})")
        with open(cfg, "w") as f:
            f.write(good.replace("level: info", "level: loud"))
        ok, ran = run_rules(rules, conf, remap)
        check(not ok, "real ctl: a broken config is refused -> roll back")
        check(d.poll() is None, "real ctl: the daemon keeps running on its old config")
    finally:
        SCALE = 0.01
        d.send_signal(signal.SIGTERM)
        d.wait(timeout=30)


def microshift(tmp):
    with open(os.path.join(FC, "fleet-microshift.yaml")) as f:
        fleet = yaml.safe_load(f)
    inline = [i for c in fleet["spec"]["template"]["spec"]["config"]
              for i in c.get("inline", []) if i["path"].startswith("/etc/flightctl/hooks.d/")]
    check(len(inline) == 1, "microshift: one inline hook rule file")
    rules = yaml.safe_load(inline[0]["content"])
    st = Stubs(os.path.join(tmp, "ms"))
    remap = {"/usr/bin/kubectl": st.make("kubectl")}
    changed = {"/etc/microshift/manifests.d/sluice/sluice.yaml": "updated"}
    kc = "KUBECONFIG=/var/lib/microshift/resources/kubeadmin/kubeconfig"

    ok, ran = run_rules(rules, changed, remap)
    calls = st.calls()
    check(ok and calls == [f"kubectl apply -k /etc/microshift/manifests.d/sluice/ {kc}",
                           f"kubectl -n sluice rollout status statefulset/sluice --timeout=5m {kc}"],
          f"microshift: apply -k then rollout status, with KUBECONFIG ({calls})")
    # rollout status fails (pods not ready in time): the stub fails on its
    # second call only when told; use a wrapper that fails on "rollout".
    with open(remap["/usr/bin/kubectl"] + ".rc", "w") as f:
        f.write("0")
    wrapper = os.path.join(st.dir, "kubectl-rollout-fails")
    with open(wrapper, "w") as f:
        f.write(f"""#!/bin/sh
{remap['/usr/bin/kubectl']} "$@" || exit $?
case "$*" in *rollout*) exit 1 ;; esac
""")
    os.chmod(wrapper, 0o755)
    ok, ran = run_rules(rules, changed, {"/usr/bin/kubectl": wrapper})
    calls = st.calls()
    check(not ok and len(calls) == 2, f"microshift: rollout not ready -> roll back ({len(calls)} calls)")
    st.set("kubectl", 1)
    ok, ran = run_rules(rules, changed, remap)
    calls = st.calls()
    check(not ok and len(calls) == 1, f"microshift: apply fails -> roll back, no rollout wait ({calls})")
    st.set("kubectl", 0)
    ok, ran = run_rules(rules, {"/etc/microshift/config.yaml": "updated"}, remap)
    check(ok and not st.calls(), "microshift: other files changed: nothing runs")
    t = [seconds(a.get("timeout", "10s")) for a in rules]
    check(t[1] > 300, f"microshift: the hook's timeout ({t[1]} s) exceeds kubectl's --timeout=5m")


def quadlet(tmp):
    with open(os.path.join(FC, "fleet-gateway-quadlet.yaml")) as f:
        fleet = yaml.safe_load(f)
    inline = [i for c in fleet["spec"]["template"]["spec"]["config"]
              for i in c.get("inline", []) if i["path"].startswith("/etc/flightctl/hooks.d/")]
    check(len(inline) == 1, "quadlet: one inline hook rule file")
    rules = yaml.safe_load(inline[0]["content"])
    st = Stubs(os.path.join(tmp, "q"))
    remap = {"/usr/bin/podman": st.make("podman")}
    changed = {"/etc/sluice/sluice.yaml": "updated"}
    ok, ran = run_rules(rules, changed, remap)
    calls = st.calls()
    check(ok and calls == ["podman exec sluice /usr/bin/sluice ctl reload --wait-healthy 60s "
                           "-c /etc/sluice/sluice.yaml KUBECONFIG="],
          f"quadlet: config updated -> reload inside the container ({calls})")
    st.set("podman", 1)
    ok, ran = run_rules(rules, changed, remap)
    check(not ok and len(st.calls()) == 1, "quadlet: reload fails -> roll back")


def main():
    sluice = sys.argv[1] if len(sys.argv) > 1 else None
    tmp = tempfile.mkdtemp(prefix="sluice-hook-")
    try:
        gateway(sluice, tmp)
        microshift(tmp)
        quadlet(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
