#!/usr/bin/env python3
"""The unit's RestartPreventExitStatus= against the daemon's real exit codes.

deploy/systemd/sluice.service must not restart on the exit codes a restart
cannot fix. This runs the built daemon into each of them and checks the
unit lists exactly those: 2 (a config that does not load), 3 (the store is
locked by a running daemon), 4 (data.mdb gone beside its store.id), 5 (the
encryption key is missing). And that 0 (clean stop after SIGTERM) is what a
stop gives, so the unit's Restart=on-failure leaves it stopped.

  exit_codes_test.py SLUICE_BINARY
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
UNIT = os.path.join(ROOT, "deploy", "systemd", "sluice.service")
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(tmp, name, extra=""):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(f"""node:
  id: exit-codes
  data_dir: {tmp}/data
listeners:
  native:
    tcp: ""
  http:
    address: ""
admin:
  address: 127.0.0.1:{free_port()}
{extra}streams:
  - name: t
""")
    return path


def admin_url(cfg):
    with open(cfg) as f:
        port = re.search(r"address: 127\.0\.0\.1:(\d+)", f.read()).group(1)
    return f"http://127.0.0.1:{port}/readyz"


def run(sluice, cfg, env=None):
    p = subprocess.run([sluice, "run", "-c", cfg], capture_output=True,
                       text=True, timeout=60, env=env)
    return p.returncode, (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]


def main():
    sluice = sys.argv[1]
    with open(UNIT) as f:
        unit = f.read()
    m = re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.M)
    prevent = set(m.group(1).split()) if m else set()
    check(prevent == {"2", "3", "4", "5"}, f"unit prevents restart on {sorted(prevent)}")
    check(re.search(r"^Restart=on-failure$", unit, re.M) is not None, "Restart=on-failure")

    tmp = tempfile.mkdtemp(prefix="sluice-exit-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    try:
        bad = config(tmp, "bad.yaml", "store:\n  budgett: 1GiB\n")
        rc, last = run(sluice, bad, env)
        check(rc == 2, f"invalid config: exit {rc} (want 2) {last[0][:100]}")

        keyless = config(tmp, "key.yaml",
                         "store:\n  encryption_key_env: SLUICE_TEST_UNSET_KEYS\n")
        rc, last = run(sluice, keyless, env)
        check(rc == 5, f"encryption key missing: exit {rc} (want 5) {last[0][-60:]}")

        good = config(tmp, "good.yaml")
        daemon = subprocess.Popen([sluice, "run", "-c", good], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url, deadline, ready = admin_url(good), time.monotonic() + 30, False
        while not ready and daemon.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    ready = r.status == 200
            except Exception:
                time.sleep(0.05)  # polling /readyz, with a deadline
        check(ready, "first daemon ready")
        second = config(tmp, "second.yaml")
        rc, last = run(sluice, second, env)
        check(rc == 3, f"store locked by a running daemon: exit {rc} (want 3) {last[0][-60:]}")
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=30)
        check(rc == 0, f"SIGTERM: clean stop, exit {rc} (no restart under on-failure)")

        os.unlink(os.path.join(tmp, "data", "data.mdb"))
        rc, last = run(sluice, good, env)
        check(rc == 4, f"data.mdb gone beside store.id: exit {rc} (want 4) {last[0][-60:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
