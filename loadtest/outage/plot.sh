#!/usr/bin/env bash
# loadtest/outage/plot.sh DIR [OUTDIR]: PNGs from a `loadtest/run outage
# --out DIR` run (samples.csv, latency.csv, phases.env), with gnuplot:
#   outage.png            the four panels below in one picture (README)
#   outage-rates.png      ingest vs delivery rate (events/s)
#   outage-backlog.png    undelivered events
#   outage-latency.png    live records: event time -> Kafka CreateTime
#   outage-resources.png  daemon RSS anon and store bytes on disk
# The outage (Kafka stopped, or the link to it cut) is shaded red, Kafka's
# own restart orange and the catch-up green. With a store budget the backlog
# panel shows what is still stored and undelivered. OUTDIR defaults to DIR.
set -euo pipefail
dir=${1:?usage: loadtest/outage/plot.sh DIR [OUTDIR]}
outdir=${2:-$dir}
command -v gnuplot >/dev/null || { echo "plot.sh: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
for f in samples.csv latency.csv phases.env result.json; do
  [[ -s $dir/$f ]] || { echo "plot.sh: $dir/$f missing" >&2; exit 1; }
done
mkdir -p "$outdir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Blank lines where a second has no live record (Kafka was away), so that
# gnuplot breaks the latency lines there instead of drawing across the gap.
python3 - "$dir/latency.csv" "$tmp/latency.dat" <<'PY'
import sys
rows = open(sys.argv[1]).read().splitlines()
out, last = [rows[0]], None
for line in rows[1:]:
    f = line.split(",")
    if int(f[1]) == 0:
        continue
    if last is not None and int(f[0]) - last > 1:
        out.append("")
    out.append(line)
    last = int(f[0])
open(sys.argv[2], "w").write("\n".join(out) + "\n")
PY
# t_start, t_cut, t_restore, t_ready, t_caught, t_end (Unix seconds).
t_start="" t_cut="" t_restore="" t_ready="" t_caught="" t_end=""
# shellcheck disable=SC1091 # written by loadtest/outage/run.sh
source "$dir/phases.env"
rel() { python3 -c "print(round(${1:-0} - $t_start, 2) if '${1:-}' else '')"; }
cut=$(rel "$t_cut") restore=$(rel "$t_restore") ready=$(rel "$t_ready")
caught=$(rel "${t_caught:-}")
[[ -n $caught ]] || caught=$(rel "$t_end")
xmax=$(python3 -c "print(int($t_end - $t_start) + 5)")
title=$(python3 - "$dir/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
how = {"netns": "link to Kafka cut", "netns-down": "link to Kafka down"}.get(
    r.get("cut", "stop"), "Kafka out")
extra = ""
if r.get("budget_bytes"):
    extra = (f", store budget {r['budget_bytes']}: {r['evicted_events']:,} evicted, "
             f"{r['gap_events']:,} in gap records")
print(f"{r['ingest_rate']:,} events/s in, {how} for {r['outage_s']:.0f} s: "
      f"caught up {r['catch_up_s']} s after the restart, "
      f"{r['missing']} missing, {r['duplicates']} duplicates{extra}")
PY
)
# Backlog as the run measured it (the uplink's own with a store budget).
bcol=$(python3 -c "import json; print(json.load(open('$dir/result.json')).get('backlog_column', 'backlog'))")
# What the red band was: the broker stopped, or the link to it cut.
redlabel=$(python3 -c "import json; print({'netns': 'link cut', 'netns-down': 'link down'}.get(json.load(open('$dir/result.json')).get('cut', 'stop'), 'Kafka stopped'))")

common() {
  cat <<GP
set datafile separator ","
set key top left opaque box
set grid ytics lc rgb "#dddddd"
set xlabel "seconds since ingest started"
set xrange [0:$xmax]
set style rect fc rgb "#f4b6b6" fs solid 0.5 noborder
set object 1 rect from $cut, graph 0 to $restore, graph 1 behind
set object 2 rect from $restore, graph 0 to $ready, graph 1 behind fc rgb "#f8d7a8" fs solid 0.5 noborder
set object 3 rect from $ready, graph 0 to $caught, graph 1 behind fc rgb "#c9e8c9" fs solid 0.5 noborder
t0 = $t_start
GP
}
panel_rates() {
  cat <<GP
set title "ingest vs delivery to Kafka (red: $redlabel, orange: Kafka starting, green: catch-up)"
set ylabel "events/s"
set format y "%.0s%c"
plot "$dir/samples.csv" using (column("t")-t0):(column("ingest_rate")) every ::1 with lines lw 2 lc rgb "#1f77b4" title "ingest (acked)", \\
     "" using (column("t")-t0):(column("delivery_rate")) every ::1 with lines lw 2 lc rgb "#2ca02c" title "delivered (committed)"
GP
}
panel_backlog() {
  cat <<GP
set title "backlog: stored, not yet delivered"
set ylabel "events"
set format y "%.1s%c"
plot "$dir/samples.csv" using (column("t")-t0):(column("$bcol")) every ::1 with filledcurves x1 lc rgb "#9467bd" fs transparent solid 0.4 title "backlog"
GP
}
panel_latency() {
  cat <<GP
set title "live records, per second: event time -> Kafka CreateTime (below 1 ms drawn at 1)"
set ylabel "ms"
set logscale y
set format y "%g"
set yrange [1:*]
atleast1(v) = v < 1 ? 1 : v
plot "$tmp/latency.dat" using (column("t_s")+0.5-t0):(atleast1(column("live_p50_ms"))) with lines lw 2 lc rgb "#1f77b4" title "p50", \\
     "" using (column("t_s")+0.5-t0):(atleast1(column("live_p99_ms"))) with lines lw 2 lc rgb "#d62728" title "p99", \\
     "" using (column("t_s")+0.5-t0):(atleast1(column("live_max_ms"))) with lines lw 1 dt 2 lc rgb "#7f7f7f" title "max"
unset logscale y
set yrange [*:*]
GP
}
panel_resources() {
  cat <<GP
set title "daemon memory and store on disk"
set ylabel "RSS anon (MB)"
set y2label "store on disk (MB)"
set format y "%g"
set format y2 "%g"
set ytics nomirror
set y2tics
set yrange [0:*]
set y2range [0:*]
plot "$dir/samples.csv" using (column("t")-t0):(column("rss_anon_kb")/1024) every ::1 with lines lw 2 lc rgb "#ff7f0e" title "RSS anon", \\
     "" using (column("t")-t0):(column("disk_bytes")/1048576) every ::1 axes x1y2 with lines lw 2 lc rgb "#8c564b" title "store on disk"
unset y2tics
unset y2label
set ytics mirror
GP
}

for p in rates backlog latency resources; do
  {
    echo 'set terminal pngcairo size 1000,420 font "DejaVu Sans,10"'
    echo "set output \"$outdir/outage-$p.png\""
    common
    "panel_$p"
  } | gnuplot
done
{
  echo 'set terminal pngcairo size 1400,900 font "DejaVu Sans,10"'
  echo "set output \"$outdir/outage.png\""
  echo "set multiplot layout 2,2 title \"$title\" font \",12\""
  common
  panel_rates
  panel_backlog
  panel_latency
  panel_resources
  echo "unset multiplot"
} | gnuplot
echo "plot.sh: wrote $outdir/outage.png and outage-{rates,backlog,latency,resources}.png" >&2
