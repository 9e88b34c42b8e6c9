#!/usr/bin/env python3
"""The alerts through a real outage (`loadtest/run outage --alerts`).

Starts a Prometheus (free loopback port) scraping the daemon's /metrics
every second, with deploy/monitoring/rules.yaml scaled down in time by
--scale (every range, `for:`, the backlog-age threshold and the budget
projection's horizon divided by it: with 60, the uplink alert fires 15 s
after the cut instead of 15 min), and records every alert's state each
half second with the run's phase (warmup, outage, restore, drain, ...)
until --stop exists. Then writes --out (JSON) and exits 0 when every
--require alert fired during the outage and none of them was still
pending or firing at the end.
"""
import argparse
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
import urllib.request

import yaml


def seconds(d):
    total = 0
    for n, u in re.findall(r"(\d+)(ms|s|m|h|d)", d):
        total += int(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[u]
    return total


def scale_rules(doc, f):
    for g in doc["groups"]:
        for r in g["rules"]:
            e = r["expr"]
            e = re.sub(r"\[(\d+[smhd])\]", lambda m: f"[{max(2, int(seconds(m.group(1)) / f))}s]", e)
            e = re.sub(r"(\d+) \* 3600", lambda m: f"{m.group(1)} * {int(3600 / f)}", e)
            e = re.sub(r"(oldest_undelivered_age_seconds\)) > (\d+)",
                       lambda m: f"{m.group(1)} > {int(int(m.group(2)) / f)}", e)
            r["expr"] = e
            if "for" in r:
                r["for"] = f"{max(1, int(seconds(r['for']) / f))}s"
    return doc


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url):
    with urllib.request.urlopen(url, timeout=3) as r:
        return json.loads(r.read())


NODE_PANELS = ["Uplink state", "Firing sluice alerts", "Backlog (events) by stream",
               "Oldest undelivered event by stream", "Drain vs live rate by stream",
               "Catch-up ETA by stream (-1: not catching up)", "Disk budget",
               "Latency (p99)"]


def png(a, base, t0, events):
    """The node dashboard's panels over the run, the outage shaded."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import render_panels
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    shade, p = [], a.phase_t
    if "outage" in p:
        shade.append((p["outage"] - t0, p.get("restore", time.time()) - t0, "#ff0000"))
    if "restore" in p:
        shade.append((p["restore"] - t0, p.get("drain", time.time()) - t0, "#ff9900"))
    try:
        render_panels.render(base, os.path.join(root, "deploy/monitoring/grafana/sluice-node.json"),
                             NODE_PANELS, t0, time.time(), a.png, shade=shade,
                             title="sluice-node.json panels over loadtest/run outage --alerts "
                             "(Kafka stopped: red; restarting: orange; rules scaled 60x in time)")
        print(f"[alerts] panels rendered to {a.png}", file=sys.stderr)
    except Exception as e:  # a picture is not worth failing the run
        print(f"[alerts] could not render panels: {e}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin", required=True)
    ap.add_argument("--rules", required=True)
    ap.add_argument("--scale", type=float, default=60)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--phase-file")
    ap.add_argument("--out", required=True)
    ap.add_argument("--require", default="SluiceUplinkNotDelivering,SluiceBacklogOld")
    ap.add_argument("--png", help="render node dashboard panels of the run here (gnuplot)")
    a = ap.parse_args()
    prom = shutil.which("prometheus")
    if not prom:
        print("outage_alerts: prometheus not found (Debian package prometheus)", file=sys.stderr)
        return 77
    work = tempfile.mkdtemp(prefix="sl_outage_prom_")
    rules = os.path.join(work, "rules.yaml")
    yaml.safe_dump(scale_rules(yaml.safe_load(open(a.rules)), a.scale), open(rules, "w"),
                   sort_keys=False)
    cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
           "rule_files": [rules],
           "scrape_configs": [{"job_name": "sluice",
                               "static_configs": [{"targets": [a.admin]}]}]}
    yaml.safe_dump(cfg, open(os.path.join(work, "prometheus.yml"), "w"))
    port = free_port()
    proc = subprocess.Popen([prom, f"--config.file={work}/prometheus.yml",
                             f"--storage.tsdb.path={work}/tsdb",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            stdout=open(os.path.join(work, "prometheus.log"), "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    signal.signal(signal.SIGTERM, lambda *_: open(a.stop, "a").close())
    base = f"http://127.0.0.1:{port}"
    states, events = {}, []
    a.phase_t = {}
    t0 = time.time()
    try:
        while not os.path.exists(a.stop):
            try:
                alerts = get(base + "/api/v1/alerts")["data"]["alerts"]
            except Exception:
                if proc.poll() is not None:
                    print(open(os.path.join(work, "prometheus.log")).read()[-2000:], file=sys.stderr)
                    return 1
                time.sleep(0.5)
                continue
            phase = ""
            if a.phase_file:
                try:
                    phase = open(a.phase_file).read().strip()
                    a.phase_t.setdefault(phase, time.time())
                except OSError:
                    pass
            now = {}
            for al in alerts:
                key = al["labels"]["alertname"] + "".join(
                    f",{k}={v}" for k, v in sorted(al["labels"].items())
                    if k not in ("alertname", "severity", "job", "instance"))
                now[key] = al["state"]
            for key in set(states) | set(now):
                if states.get(key) != now.get(key):
                    ev = {"t": round(time.time(), 2), "alert": key,
                          "state": now.get(key, "inactive"), "phase": phase}
                    events.append(ev)
                    print(f"[alerts] {ev['phase']:8} {key}: {ev['state']}", file=sys.stderr)
            states = now
            time.sleep(0.5)
        if a.png:
            png(a, base, t0, events)
    finally:
        proc.terminate()
        proc.wait(10)
    res = {"scale": a.scale, "events": events, "still_active": states, "require": {}}
    ok = True
    for name in a.require.split(","):
        fired = [e for e in events if e["alert"].split(",")[0] == name and e["state"] == "firing"]
        active = [k for k in states if k.split(",")[0] == name]
        res["require"][name] = {"fired_in": sorted({e["phase"] for e in fired}),
                                "first_firing_s": round(fired[0]["t"] - t0, 1) if fired else None,
                                "active_at_end": active}
        if not any(e["phase"] == "outage" for e in fired) or active:
            ok = False
    res["ok"] = ok
    json.dump(res, open(a.out, "w"), indent=1)
    shutil.rmtree(work, ignore_errors=True)
    print(f"[alerts] {'ok' if ok else 'FAILED'}: " + json.dumps(res["require"]), file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
