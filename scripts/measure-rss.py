#!/usr/bin/env python3
"""Peak RSS (VmHWM) of the sluice daemon under HTTP ingest load.

  scripts/measure-rss.py [SLUICE_BINARY] [--seconds 20] [--threads 4] [--batch 200]

Starts the daemon on a fresh store in a temporary directory (Kafka off, every
listener on a free loopback port), posts JSON batches over keep-alive HTTP
connections for the given time, then prints VmHWM/VmRSS from
/proc/PID/status and the events acknowledged. The systemd unit's MemoryMax
and the Kubernetes memory limit are derived from this number
(docs/deploy/systemd.md "Sizing"). Not a test: it measures.
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS"):
                out[k] = int(v.split()[0])  # kB
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?", default="build/daemon/sluice")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", type=int, default=200)
    a = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="sluice-rss-")
    http_port, admin_port = free_port(), free_port()
    cfg = os.path.join(tmp, "sluice.yaml")
    with open(cfg, "w") as f:
        f.write(f"""node:
  id: rss-probe
  data_dir: {tmp}/data
store:
  budget_bytes: 1GiB
  sync: always
listeners:
  native:
    tcp: ""
  http:
    address: 127.0.0.1:{http_port}
admin:
  address: 127.0.0.1:{admin_port}
streams:
  - name: telemetry
""")
    os.chmod(cfg, 0o644)
    proc = subprocess.Popen([a.binary, "run", "-c", cfg],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as r:
                if r.status == 200:
                    break
        except Exception:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit("daemon did not become ready: " +
                     proc.stderr.read().decode(errors="replace")[-2000:])
        time.sleep(0.05)
    idle = status(proc.pid)

    body = "\n".join(json.dumps({
        "source": f"plant1/line3/press{i % 50:02d}/temp",
        "time": "2026-11-27T02:00:00.250Z", "value": 61.5 + i, "unit": "C",
        "quality": "good", "attributes": {"shift": "B"}})
        for i in range(a.batch)).encode()
    acked = [0] * a.threads
    errors = [0] * a.threads
    stop = time.monotonic() + a.seconds

    def worker(n):
        c = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        while time.monotonic() < stop:
            c.request("POST", "/v1/events", body,
                      {"Content-Type": "application/x-ndjson"})
            r = c.getresponse()
            r.read()
            if 200 <= r.status < 300:
                acked[n] += a.batch
            else:
                errors[n] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(a.threads)]
    for t in ts:
        t.start()
    peak = 0
    while any(t.is_alive() for t in ts):
        peak = max(peak, status(proc.pid)["VmRSS"])
        time.sleep(0.2)
    for t in ts:
        t.join()
    loaded = status(proc.pid)
    proc.terminate()
    proc.wait(timeout=30)
    du = subprocess.run(["du", "-sk", f"{tmp}/data"], capture_output=True,
                        text=True).stdout.split()[0]
    print(f"binary {a.binary}; {a.seconds:.0f} s, {a.threads} connections, "
          f"{a.batch} events/request")
    print(f"events acknowledged {sum(acked)} ({sum(acked) / a.seconds:.0f}/s), "
          f"non-2xx answers {sum(errors)}, store {int(du) // 1024} MiB")
    print(f"VmRSS idle {idle['VmRSS'] // 1024} MiB; "
          f"VmHWM under load {loaded['VmHWM'] // 1024} MiB "
          f"({loaded['VmHWM']} kB); sampled peak VmRSS {peak // 1024} MiB")
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
