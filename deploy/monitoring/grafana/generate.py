#!/usr/bin/env python3
"""Writes the Grafana dashboards sluice-node.json and sluice-fleet.json.

The panels are listed here once (title, kind, PromQL, unit); the JSON is
Grafana's dashboard model (schemaVersion 39), with a Prometheus datasource
variable so it imports into any Grafana. Run after editing, and commit both:
  deploy/monitoring/grafana/generate.py           # rewrite the JSON files
  deploy/monitoring/grafana/generate.py --check   # exit 1 if they differ
tests/monitoring checks the files are up to date, that every expression
parses in a real Prometheus and names only metrics a running daemon exports.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'job=~"$job",instance=~"$instance"'  # node dashboard selector
FSEL = 'job=~"$job"'                       # fleet dashboard selector
RI = "$__rate_interval"

UPLINK_STATES = {"1": "connecting", "2": "resuming", "3": "running", "4": "backoff",
                 "5": "fenced", "6": "failed", "7": "disconnected"}


def var_datasource():
    return {"name": "datasource", "label": "Prometheus", "type": "datasource",
            "query": "prometheus", "current": {}, "hide": 0, "refresh": 1}


def var_query(name, label, query, multi=True):
    return {"name": name, "label": label, "type": "query", "datasource": DS,
            "query": {"query": query, "refId": name}, "definition": query,
            "refresh": 2, "multi": multi, "includeAll": True, "allValue": ".+",
            "current": {}, "sort": 1, "hide": 0}


class Board:
    def __init__(self, uid, title, desc, variables):
        self.uid, self.title, self.desc, self.vars = uid, title, desc, variables
        self.panels, self.y, self.x, self.row_h, self.next_id = [], 0, 0, 0, 1

    def row(self, title):
        if self.x:
            self.y += self.row_h
            self.x = self.row_h = 0
        self.panels.append({"id": self.next_id, "type": "row", "title": title,
                            "collapsed": False, "panels": [],
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}})
        self.next_id += 1
        self.y += 1

    def panel(self, kind, title, targets, unit="short", w=8, h=8, desc="",
              mappings=None, extra=None):
        if self.x + w > 24:
            self.y += self.row_h
            self.x = self.row_h = 0
        p = {"id": self.next_id, "type": kind, "title": title, "description": desc,
             "datasource": DS, "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
             "fieldConfig": {"defaults": {"unit": unit, "mappings": mappings or []},
                             "overrides": []},
             "options": {}, "targets": []}
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}}
        for i, t in enumerate(targets):
            expr, legend = t if isinstance(t, tuple) else (t, "")
            tgt = {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr,
                   "legendFormat": legend}
            if kind == "table":
                tgt.update({"instant": True, "format": "table"})
            p["targets"].append(tgt)
        if extra:
            p.update(extra)
        self.panels.append(p)
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)

    def text(self, title, content, w=24, h=4):
        if self.x + w > 24:
            self.y += self.row_h
            self.x = self.row_h = 0
        self.panels.append({"id": self.next_id, "type": "text", "title": title,
                            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
                            "options": {"mode": "markdown", "content": content}})
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)

    def json(self):
        return {"uid": self.uid, "title": self.title, "description": self.desc,
                "tags": ["sluice"], "timezone": "utc", "editable": True,
                "schemaVersion": 39, "version": 1, "refresh": "30s",
                "time": {"from": "now-6h", "to": "now"},
                "templating": {"list": self.vars}, "annotations": {"list": []},
                "links": [], "panels": self.panels}


def state_mappings():
    return [{"type": "value", "options": {k: {"text": v} for k, v in UPLINK_STATES.items()}}]


def node():
    b = Board("sluice-node", "sluice: node",
              "One sluice node: ingest, backlog, drain, store, pipelines, MQTT, uplink "
              "(docs/MONITORING.md).",
              [var_datasource(),
               var_query("job", "job", "label_values(sluice_store_budget_bytes, job)"),
               var_query("instance", "node",
                         'label_values(sluice_store_budget_bytes{job=~"$job"}, instance)')])
    b.row("State")
    b.panel("stat", "Uplink state", [(f"sluice_uplink_state{{{SEL}}}", "{{instance}}")],
            w=6, h=4, mappings=state_mappings())
    b.panel("stat", "Kafka connected", [(f"sluice_uplink_connected{{{SEL}}}", "{{instance}}")],
            w=6, h=4, mappings=[{"type": "value", "options": {"0": {"text": "no"},
                                                               "1": {"text": "yes"}}}])
    b.panel("stat", "MQTT connected", [(f"sluice_mqtt_connected{{{SEL}}}", "{{link}}")],
            w=6, h=4, mappings=[{"type": "value", "options": {"0": {"text": "no"},
                                                               "1": {"text": "yes"}}}])
    b.panel("stat", "Firing sluice alerts",
            [(f'count(ALERTS{{alertname=~"Sluice.*",alertstate="firing",{SEL}}}) or vector(0)',
              "")], w=6, h=4)
    b.row("Ingest")
    b.panel("timeseries", "Events ingested by path",
            [(f"sum by (path) (rate(sluice_ingest_events_total{{{SEL}}}[{RI}]))", "{{path}}")],
            unit="ops")
    b.panel("timeseries", "Bytes ingested by path",
            [(f"sum by (path) (rate(sluice_ingest_bytes_total{{{SEL}}}[{RI}]))", "{{path}}")],
            unit="Bps")
    b.panel("timeseries", "Refused by path and reason",
            [(f"sum by (path, reason) (rate(sluice_ingest_rejects_total{{{SEL}}}[{RI}]))",
              "{{path}} {{reason}}"),
             (f"sum by (path) (rate(sluice_ingest_pauses_total{{{SEL}}}[{RI}]))",
              "{{path}} paused")], unit="ops")
    b.row("Backlog and drain")
    b.panel("timeseries", "Backlog (events) by stream",
            [(f"sum by (stream) (sluice_uplink_backlog_events{{{SEL}}})", "{{stream}}")])
    b.panel("timeseries", "Oldest undelivered event by stream",
            [(f"max by (stream) (sluice_uplink_oldest_undelivered_age_seconds{{{SEL}}})",
              "{{stream}}")], unit="s")
    b.panel("timeseries", "Catch-up ETA by stream (-1: not catching up)",
            [(f"max by (stream) (sluice_uplink_catch_up_eta_seconds{{{SEL}}})", "{{stream}}")],
            unit="s")
    b.panel("timeseries", "Drain vs live rate by stream",
            [(f"sum by (stream) (sluice_uplink_drain_rate_events{{{SEL}}})", "drain {{stream}}"),
             (f"sum by (stream) (rate(sluice_uplink_delivered_total{{{SEL}}}[{RI}]))",
              "delivered {{stream}}"),
             (f"sum by (stream) (rate(sluice_ingest_events_total{{{SEL}}}[{RI}]))",
              "live {{stream}}")], unit="ops", w=12)
    b.panel("timeseries", "Lost or set aside: evicted, gaps, dead letters",
            [(f"sum by (stream, reason) (increase(sluice_store_evicted_events_total{{{SEL}}}[{RI}]))",
              "evicted {{stream}} {{reason}}"),
             (f"sum by (stream) (increase(sluice_uplink_gaps_total{{{SEL}}}[{RI}]))",
              "gaps {{stream}}"),
             (f"sum by (stream) (increase(sluice_uplink_dead_lettered_total{{{SEL}}}[{RI}]))",
              "dead-lettered {{stream}}")], w=12)
    b.row("Store and latency")
    b.panel("timeseries", "Disk budget",
            [(f"sum(sluice_store_used_bytes{{{SEL}}})", "used"),
             (f"sum(sluice_store_budget_bytes{{{SEL}}})", "budget"),
             (f"sum(sluice_uplink_backlog_bytes{{{SEL}}})", "undelivered backlog")],
            unit="bytes")
    b.panel("gauge", "Backlog share of the budget",
            [(f"sum(sluice_uplink_backlog_bytes{{{SEL}}}) / sum(sluice_store_budget_bytes{{{SEL}}})",
              "")], unit="percentunit",
            extra={"options": {"reduceOptions": {"calcs": ["lastNotNull"]}},
                   "fieldConfig": {"defaults": {"unit": "percentunit", "min": 0, "max": 1,
                                                "mappings": [], "thresholds": {
                                                    "mode": "absolute", "steps": [
                                                        {"color": "green", "value": None},
                                                        {"color": "orange", "value": 0.5},
                                                        {"color": "red", "value": 0.8}]}},
                                   "overrides": []}})
    b.panel("timeseries", "Latency (p99)",
            [(f"histogram_quantile(0.99, sum by (le) (rate(sluice_store_commit_latency_seconds_bucket{{{SEL}}}[{RI}])))",
              "store commit"),
             (f"histogram_quantile(0.99, sum by (le) (rate(sluice_mqtt_commit_to_puback_seconds_bucket{{{SEL}}}[{RI}])))",
              "MQTT commit to PUBACK"),
             (f"max(sluice_uplink_txn_commit_seconds{{{SEL}}})", "Kafka transaction commit (last)")],
            unit="s")
    b.panel("timeseries", "Store queue, backpressure, write errors",
            [(f"sum(sluice_store_queue_depth{{{SEL}}})", "writer queue"),
             (f"max(sluice_store_backpressure{{{SEL}}})", "backpressure"),
             (f"sum by (reason) (increase(sluice_store_write_errors_total{{{SEL}}}[{RI}]))",
              "write errors {{reason}}")])
    b.panel("timeseries", "Clock offset (wall - store clock)",
            [(f"max(sluice_store_clock_offset_seconds{{{SEL}}})", "offset"),
             (f"max(sluice_uplink_clock_skew_seconds{{{SEL}}})", "skew vs broker")], unit="s")
    b.panel("timeseries", "Connections and in-flight bytes",
            [(f"sum(sluice_ingest_open_connections{{{SEL}}})", "connections"),
             (f"sum(sluice_ingest_inflight_bytes{{{SEL}}})", "in-flight bytes")])
    b.text("Memory (RSS)",
           "The daemon exports no process metrics yet (no `process_resident_memory_bytes`): "
           "watch RSS with node_exporter / cAdvisor (`container_memory_rss`) or "
           "`systemctl status sluice` until it does (docs/MONITORING.md).", w=24, h=3)
    b.row("Pipelines")
    b.panel("timeseries", "Events matched by pipeline",
            [(f"sum by (pipeline) (rate(sluice_pipeline_events_total{{{SEL}}}[{RI}]))",
              "{{pipeline}}")], unit="ops")
    b.panel("timeseries", "Dropped by pipeline and reason",
            [(f"sum by (pipeline, reason) (rate(sluice_pipeline_dropped_total{{{SEL}}}[{RI}]))",
              "{{pipeline}} {{reason}}")], unit="ops")
    b.panel("timeseries", "Emitted and late by pipeline",
            [(f"sum by (pipeline) (rate(sluice_pipeline_emitted_total{{{SEL}}}[{RI}]))",
              "emitted {{pipeline}}"),
             (f"sum by (pipeline) (rate(sluice_pipeline_late_total{{{SEL}}}[{RI}]))",
              "late {{pipeline}}")], unit="ops")
    b.row("MQTT")
    b.panel("timeseries", "Messages by subscription",
            [(f"sum by (subscription) (rate(sluice_mqtt_subscription_messages_total{{{SEL}}}[{RI}]))",
              "{{subscription}}")], unit="ops")
    b.panel("timeseries", "Reconnects and decode errors",
            [(f"sum by (link) (increase(sluice_mqtt_reconnects_total{{{SEL}}}[{RI}]))",
              "reconnects {{link}}"),
             (f"sum by (reason) (increase(sluice_mqtt_decode_errors_total{{{SEL}}}[{RI}]))",
              "decode errors {{reason}}")])
    b.panel("timeseries", "Redeliveries dropped, Sparkplug gaps",
            [(f"sum(rate(sluice_mqtt_redeliveries_dropped_total{{{SEL}}}[{RI}]))", "redeliveries dropped"),
             (f"sum(increase(sluice_mqtt_sparkplug_seq_gaps_total{{{SEL}}}[{RI}]))", "Sparkplug seq gaps")])
    b.row("Uplink")
    b.panel("timeseries", "Transactions, retries, restarts",
            [(f"sum(rate(sluice_uplink_txn_commits_total{{{SEL}}}[{RI}]))", "commits"),
             (f"sum(rate(sluice_uplink_txn_aborts_total{{{SEL}}}[{RI}]))", "aborts"),
             (f"sum(rate(sluice_uplink_retries_total{{{SEL}}}[{RI}]))", "retries"),
             (f"sum(rate(sluice_uplink_producer_restarts_total{{{SEL}}}[{RI}]))", "producer restarts")],
            unit="ops")
    b.panel("timeseries", "Authentication failures, throttling",
            [(f"sum(increase(sluice_uplink_auth_failures_total{{{SEL}}}[{RI}]))", "auth failures"),
             (f"sum(rate(sluice_uplink_throttled_ms_total{{{SEL}}}[{RI}])) / 1000", "throttled (s/s)")])
    b.panel("timeseries", "Producer queue, timestamps refused",
            [(f"sum(sluice_uplink_queue_depth{{{SEL}}})", "librdkafka queue"),
             (f"max(sluice_uplink_timestamp_blocked{{{SEL}}})", "timestamp blocked")])
    return b.json()


def fleet():
    b = Board("sluice-fleet", "sluice: fleet",
              "Every sluice node one Prometheus scrapes: states, worst backlogs, losses "
              "(docs/MONITORING.md).",
              [var_datasource(),
               var_query("job", "job", "label_values(sluice_store_budget_bytes, job)")])
    b.row("Nodes")
    b.panel("stat", "Nodes up", [(f"count(up{{{FSEL}}} == 1) or vector(0)", "")], w=4, h=4)
    b.panel("stat", "Nodes down", [(f"count(up{{{FSEL}}} == 0) or vector(0)", "")], w=4, h=4)
    b.panel("stat", "Nodes not delivering",
            [(f"count(sum by (job, instance) (sluice_uplink_backlog_events{{{FSEL}}}) > 0 "
              f"and on (job, instance) sum by (job, instance) (increase(sluice_uplink_delivered_total{{{FSEL}}}[5m])) == 0) or vector(0)",
              "")], w=4, h=4)
    b.panel("stat", "MQTT links down",
            [(f"count(sluice_mqtt_connected{{{FSEL}}} == 0) or vector(0)", "")], w=4, h=4)
    b.panel("stat", "Firing sluice alerts",
            [(f'count(ALERTS{{alertname=~"Sluice.*",alertstate="firing",{FSEL}}}) or vector(0)',
              "")], w=8, h=4)
    b.panel("piechart", "Nodes by uplink state",
            [(f'count_values("state", sluice_uplink_state{{{FSEL}}})',
              "{{state}}")], w=8, mappings=state_mappings())
    b.panel("timeseries", "Fleet ingest and delivery",
            [(f"sum(rate(sluice_ingest_events_total{{{FSEL}}}[{RI}]))", "ingested"),
             (f"sum(rate(sluice_uplink_delivered_total{{{FSEL}}}[{RI}]))", "delivered")],
            unit="ops", w=16)
    b.row("Worst backlogs")
    b.panel("table", "Oldest undelivered event (top 10 nodes)",
            [(f"topk(10, max by (instance) (sluice_uplink_oldest_undelivered_age_seconds{{{FSEL}}}))",
              "")], unit="s")
    b.panel("table", "Backlog share of the budget (top 10 nodes)",
            [(f"topk(10, sum by (instance) (sluice_uplink_backlog_bytes{{{FSEL}}}) / on (instance) "
              f"sum by (instance) (sluice_store_budget_bytes{{{FSEL}}}))", "")],
            unit="percentunit")
    b.panel("table", "Undelivered events lost in 24 h (evicted, by node)",
            [(f"topk(10, sum by (instance) (increase(sluice_store_evicted_events_total{{{FSEL}}}[24h])))",
              "")])
    b.panel("timeseries", "Backlog (events), top 10 nodes",
            [(f"topk(10, sum by (instance) (sluice_uplink_backlog_events{{{FSEL}}}))",
              "{{instance}}")], w=12)
    b.panel("timeseries", "Catch-up ETA, top 10 nodes (-1: not catching up)",
            [(f"topk(10, max by (instance) (sluice_uplink_catch_up_eta_seconds{{{FSEL}}}))",
              "{{instance}}")], unit="s", w=12)
    b.row("Generations and model versions")
    b.text("Generations and model versions",
           "Not exported yet: the applied config generation per node comes with the fleet "
           "control plane (issue 17) and the model versions with edge AI (issue 19). "
           "Until then `sluice_config_reloads_total` below shows where configs were applied.",
           w=12, h=8)
    b.panel("table", "Config reloads applied / refused in 24 h",
            [(f"sum by (instance) (increase(sluice_config_reloads_total{{{FSEL}}}[24h]))", "applied"),
             (f"sum by (instance) (increase(sluice_config_reload_errors_total{{{FSEL}}}[24h]))", "refused")],
            w=12)
    return b.json()


def render(board):
    return json.dumps(board, indent=2, sort_keys=False) + "\n"


def main():
    check = "--check" in sys.argv[1:]
    bad = 0
    for name, fn in (("sluice-node.json", node), ("sluice-fleet.json", fleet)):
        path = os.path.join(HERE, name)
        text = render(fn())
        if check:
            try:
                same = open(path).read() == text
            except OSError:
                same = False
            if not same:
                print(f"{path}: out of date: run deploy/monitoring/grafana/generate.py")
                bad = 1
        else:
            with open(path, "w") as f:
                f.write(text)
    return bad


if __name__ == "__main__":
    sys.exit(main())
