#!/usr/bin/env python3
"""Renders panels of a Grafana dashboard (deploy/monitoring/grafana/*.json)
with gnuplot, from a Prometheus fed by a real run: the same PromQL as the
dashboard (variables: every node; $__rate_interval given), queried with
/api/v1/query_range. Grafana is not a Debian package, so this is how
docs/MONITORING.md's pictures are made (tests/monitoring/outage_alerts.py
--png, during `loadtest/run outage --alerts --out DIR`).
"""
import json
import os
import re
import subprocess
import tempfile
import urllib.parse
import urllib.request


def fill(expr, rate_interval):
    expr = expr.replace("$__rate_interval", rate_interval)
    return re.sub(r"\$\{?(\w+)\}?", ".+", expr)


def legend(fmt, metric, fallback):
    if not fmt:
        return fallback
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt).strip()


def query_range(base, expr, t0, t1, step):
    url = base + "/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": t0, "end": t1, "step": step})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())["data"]["result"]


def render(base, dashboard, titles, t0, t1, png, rate_interval="5s", shade=None, title=""):
    board = json.load(open(dashboard))
    panels = {p["title"]: p for p in board["panels"] if p.get("targets")}
    work = tempfile.mkdtemp(prefix="sl_panels_")
    plots = []
    for i, t in enumerate(titles):
        p = panels[t]
        series = []
        for tgt in p["targets"]:
            for j, s in enumerate(query_range(base, fill(tgt["expr"], rate_interval), t0, t1, 1)):
                name = legend(tgt.get("legendFormat", ""), s["metric"], t)
                path = os.path.join(work, f"p{i}_{tgt['refId']}_{j}.dat")
                with open(path, "w") as f:
                    for ts, v in s["values"]:
                        f.write(f"{float(ts) - t0:.1f} {v}\n")
                series.append((path, name))
        plots.append((t, p["fieldConfig"]["defaults"].get("unit", ""), series))
    rows = (len(plots) + 1) // 2
    g = [f"set terminal pngcairo size 1400,{330 * rows} font 'DejaVu Sans,10'",
         f"set output '{png}'",
         f"set multiplot layout {rows},2 title \"{title}\" font ',13'",
         "set key top left font ',9'", "set grid", "set xlabel 'seconds'",
         f"set xrange [0:{t1 - t0:.0f}]",
         "set style fill transparent solid 0.15 noborder"]
    for t, unit, series in plots:
        g.append(f"set title \"{t}\"")
        g.append(f"set ylabel '{unit if unit not in ('short', '') else ''}'")
        g.append("unset object")
        if shade:
            for k, (a, b, color) in enumerate(shade):
                g.append(f"set object {k + 1} rect from {a},graph 0 to {b},graph 1 "
                         f"fc rgb '{color}' fs transparent solid 0.12 noborder behind")
        if not series:
            g.append("set label 99 'no data' at graph 0.45,0.5")
            g.append("plot 0 notitle lc rgb '#ffffff'")
            g.append("unset label 99")
            continue
        g.append("plot " + ", ".join(f"'{p}' using 1:2 with lines lw 2 title \"{n}\""
                                     for p, n in series))
    g.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(g), text=True, check=True)
