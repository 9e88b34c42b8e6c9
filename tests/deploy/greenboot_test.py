#!/usr/bin/env python3
"""deploy/greenboot/required.d/50_sluice_ready.sh against a stub /readyz.

A tiny HTTP server on a free loopback port plays sluice's admin server:
ready (200), not ready (503), becoming ready after a few 503s, accepting
connections but never answering, and nothing listening at all. The check must
pass only for the 200 cases and fail (non-zero: greenboot marks the boot bad
and, after boot_counter boots, rolls the OS back) for the rest, each within
its bounded wait. Exit 77 when bash or curl is missing.
"""
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "deploy", "greenboot", "required.d",
                      "50_sluice_ready.sh")
failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        failures.append(msg)


class Stub(http.server.BaseHTTPRequestHandler):
    mode = "ready"
    hits = 0

    def do_GET(self):
        cls = type(self)
        cls.hits += 1
        if self.path != "/readyz":
            code = 404
        elif cls.mode == "ready":
            code = 200
        elif cls.mode == "late" and cls.hits > 2:
            code = 200
        else:
            code = 503
        body = b"ok\n" if code == 200 else b"starting\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def run(url, timeout, interval=1, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env.update(SLUICE_READYZ_URL=url, SLUICE_READY_TIMEOUT=str(timeout),
               SLUICE_READY_INTERVAL=str(interval),
               SLUICE_GREENBOOT_ENV="/nonexistent")
    env.update(extra_env or {})
    t0 = time.monotonic()
    p = subprocess.run(["bash", SCRIPT], env=env, capture_output=True,
                       text=True, timeout=timeout + 30)
    return p.returncode, time.monotonic() - t0, p.stdout + p.stderr


def main():
    if not shutil.which("bash") or not shutil.which("curl"):
        print("SKIP: bash and curl are needed")
        return 77
    check(os.path.basename(SCRIPT) > "40_microshift_running_check.sh",
          "sorts after 40_microshift_running_check.sh")
    check(os.access(SCRIPT, os.X_OK), "script is executable")

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/readyz"

    Stub.mode, Stub.hits = "ready", 0
    rc, dt, out = run(url, 10)
    check(rc == 0 and dt < 5, f"ready: exit 0 at once (rc {rc}, {dt:.1f} s) {out.strip()}")

    Stub.mode, Stub.hits = "late", 0
    rc, dt, out = run(url, 20)
    check(rc == 0 and Stub.hits == 3,
          f"ready on the third attempt: exit 0 (rc {rc}, {Stub.hits} attempts, {dt:.1f} s)")

    Stub.mode, Stub.hits = "notready", 0
    rc, dt, out = run(url, 4)
    check(rc != 0 and 3 <= dt <= 10 and "HTTP 503" in out,
          f"503 throughout: non-zero (rollback path) within the bound (rc {rc}, {dt:.1f} s) {out.strip()}")

    # Accepts connections (the kernel completes the handshake on the
    # backlog) but never answers: each attempt must time out on its own.
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(16)
    rc, dt, out = run(f"http://127.0.0.1:{hang.getsockname()[1]}/readyz", 4)
    check(rc != 0 and dt <= 12 and "no answer" in out,
          f"hanging server: non-zero within the bound (rc {rc}, {dt:.1f} s) {out.strip()}")
    hang.close()

    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens on it any more
    rc, dt, out = run(f"http://127.0.0.1:{port}/readyz", 3)
    check(rc != 0 and dt <= 10, f"nothing listening: non-zero (rc {rc}, {dt:.1f} s)")

    rc, dt, out = run(url, 0)
    check(rc != 0 and "positive" in out, f"timeout 0 refused (rc {rc})")

    # The settings file is read when the environment does not set a key.
    Stub.mode = "ready"
    envf = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                        f"greenboot-{os.getpid()}.env")
    with open(envf, "w") as f:
        f.write(f"SLUICE_READYZ_URL={url}\nSLUICE_READY_TIMEOUT=5\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_")}
    env["SLUICE_GREENBOOT_ENV"] = envf
    p = subprocess.run(["bash", SCRIPT], env=env, capture_output=True,
                       text=True, timeout=30)
    os.unlink(envf)
    check(p.returncode == 0, f"settings from the env file (rc {p.returncode})")

    srv.shutdown()
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
