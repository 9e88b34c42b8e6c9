#!/usr/bin/env python3
"""Samples a running sluice daemon once a second for the end-to-end scenarios
(loadtest/outage, loadtest/soak, make demo) and writes one CSV row per
sample; optionally shows a live one-line view on stderr.

  sampler.py --admin HOST:PORT --pid-file F --data DIR --out CSV
             --stop FILE [--phase-file F] [--interval 1] [--view]

Columns: t (Unix seconds), phase (the first word of --phase-file, written by
the scenario), stored (events in the store, all streams: sum of next
offsets), delivered (events committed to Kafka by this daemon process, from
/v1/status), ingest_rate and delivery_rate (events/s between samples),
backlog (stored - delivered for the first daemon process seen, else
the uplink's own backlog_events), uplink_backlog (the uplink's
backlog_events sum), state, connected, eta_s (catch-up estimate: backlog
divided by how fast it shrank over the last 5 s; -1 unknown), rss_anon_kb,
disk_bytes (blocks allocated under DIR), store_used_bytes (/v1/status),
daemon_cpu, kafka_cpu (with --kafka-pid-file) and machine_cpu (all
processes): cores in use since the last sample; undelivered_stored (events
neither delivered nor evicted: per stream, the undelivered offsets
[backlog_next, live_start) and [live_next, next) above the store's first
offset; with a store budget, backlog and uplink_backlog also count what was
evicted before the uplink skipped it).

Standard library only. Runs until FILE exists; a daemon that is down (killed
on purpose by the soak) gives rows with empty fields.
"""
import argparse
import json
import os
import shutil
import sys
import time
import urllib.request

COLS = ["t", "phase", "stored", "delivered", "ingest_rate", "delivery_rate",
        "backlog", "uplink_backlog", "state", "connected", "eta_s",
        "rss_anon_kb", "disk_bytes", "store_used_bytes", "daemon_cpu",
        "kafka_cpu", "machine_cpu", "undelivered_stored"]
HZ = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid):
    """CPU seconds (user + system) a process has used, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / HZ
    except (OSError, IndexError, ValueError):
        return None


def machine_busy_s():
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / HZ


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def rss_anon_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def disk_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def status(admin):
    try:
        with urllib.request.urlopen(f"http://{admin}/v1/status", timeout=0.8) as r:
            return json.load(r)
    except Exception:  # the daemon is down or restarting: an empty row
        return None


def phase(path):
    if not path:
        return ""
    try:
        with open(path) as f:
            return (f.read().split() or [""])[0]
    except OSError:
        return ""


def human(n):
    if n is None:
        return "-"
    n = float(n)
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--admin", required=True)
    ap.add_argument("--pid-file", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--phase-file", default="")
    ap.add_argument("--kafka-pid-file", default="",
                    help="also sample this process's CPU use (kafka_cpu)")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--view", action="store_true")
    ap.add_argument("--view-every", type=int, default=1,
                    help="without a terminal, a view line every N samples")
    a = ap.parse_args()

    out = open(a.out, "w", buffering=1)
    out.write(",".join(COLS) + "\n")
    prev = None  # (t, stored, delivered, pid)
    first_pid = None  # backlog = stored - delivered holds for this process
    prev_delivered = 0
    hist = []    # (t, backlog) for the ETA
    t_start = time.time()
    cpu_prev = {}
    progress_t = time.time()  # when delivered last grew (or nothing was owed)
    nview = 0
    nxt = time.time()
    while not os.path.exists(a.stop):
        t = time.time()
        pid = read_pid(a.pid_file)
        st = status(a.admin)
        row = dict.fromkeys(COLS, "")
        row["t"] = f"{t:.3f}"
        row["phase"] = phase(a.phase_file)
        rss = rss_anon_kb(pid) if pid else None
        row["rss_anon_kb"] = "" if rss is None else rss
        row["disk_bytes"] = disk_bytes(a.data)
        # CPU use in cores (CPU seconds per second) since the last sample.
        kpid = read_pid(a.kafka_pid_file) if a.kafka_pid_file else 0
        cpu = {"daemon_cpu": proc_cpu_s(pid) if pid else None,
               "kafka_cpu": proc_cpu_s(kpid) if kpid else None,
               "machine_cpu": machine_busy_s()}
        for k, v in cpu.items():
            if v is not None and cpu_prev.get(k) is not None and t > cpu_prev["t"]:
                row[k] = round(max(0.0, v - cpu_prev[k]) / (t - cpu_prev["t"]), 2)
        cpu_prev = dict(cpu, t=t)
        backlog = None
        if st:
            stored = sum(s["next_offset"] for s in st["streams"])
            up = st.get("uplink") or {}
            ups = up.get("streams", [])
            delivered = sum(s["delivered"] for s in ups)
            firsts = {s["name"]: (s["first_offset"], s["next_offset"])
                      for s in st["streams"]}
            und = 0
            for u in ups:
                first, end = firsts.get(u["name"], (0, 0))
                b, ls, ln = u["next_offset"], u["live_start"], u["live_next"]
                und += max(0, ls - max(b, first)) + max(0, end - max(ln, first))
            row.update(stored=stored, delivered=delivered,
                       undelivered_stored=und,
                       uplink_backlog=sum(s["backlog_events"] for s in ups),
                       state=up.get("state", "off"),
                       connected=int(bool(up.get("connected"))),
                       store_used_bytes=st["store"]["used_bytes"])
            if first_pid is None:
                first_pid = pid
            same = bool(prev) and prev[3] == pid and prev[2] <= delivered
            backlog = (stored - delivered if pid == first_pid
                       else row["uplink_backlog"])
            row["backlog"] = backlog
            if prev and prev[1] is not None and t > prev[0]:
                dt = t - prev[0]
                row["ingest_rate"] = round(max(0, stored - prev[1]) / dt)
                row["delivery_rate"] = round(
                    max(0, delivered - prev[2]) / dt if same else 0)
            prev = (t, stored, delivered, pid)
            if not same or delivered > prev_delivered or backlog <= 0:
                progress_t = t
            prev_delivered = delivered
            hist = [h for h in hist if t - h[0] <= 5.5] + [(t, backlog)]
            row["eta_s"] = -1
            if backlog == 0:
                row["eta_s"] = 0
            elif len(hist) >= 3 and hist[0][1] > backlog:
                shrink = (hist[0][1] - backlog) / (t - hist[0][0])
                row["eta_s"] = round(backlog / shrink, 1)
        else:
            prev = None
            hist = []
        out.write(",".join(str(row[c]) for c in COLS) + "\n")
        if a.view:
            eta = row["eta_s"]
            eta = "-" if eta in ("", -1) else f"{eta:.0f}s"
            state = row["state"] or "daemon down"
            if row["connected"] == 0:
                state += ", disconnected"
            elif st and t - progress_t >= 2:
                state += f", nothing delivered for {t - progress_t:.0f}s"
            line = (f"  t+{t - t_start:4.0f}s  {row['phase']:<8} "
                    f"in {human(row['ingest_rate'] or 0):>6}/s  "
                    f"out {human(row['delivery_rate'] or 0):>6}/s  "
                    f"backlog {human(backlog):>6}  uplink {state:<38} "
                    f"ETA {eta:>5}  rss {human((rss or 0) * 1024)}B  "
                    f"disk {human(row['disk_bytes'])}B")
            nview += 1
            if sys.stderr.isatty():
                # One updating line: never wider than the terminal.
                width = shutil.get_terminal_size((160, 24)).columns
                sys.stderr.write("\r\033[K" + line.rstrip()[:width - 1])
            elif nview % a.view_every == 1 or a.view_every == 1:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
        nxt += a.interval
        time.sleep(max(0.0, nxt - time.time()))
    if a.view and sys.stderr.isatty():
        sys.stderr.write("\n")
    out.close()


if __name__ == "__main__":
    main()
