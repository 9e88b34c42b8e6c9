"""loadtest/cost/report.py WORK N1 N2 DN1 DN2 DRAIN ONLY BASELINE: the
callgrind profiles of loadtest/cost/run.sh to one JSON object (stdout).

Instructions per event by the slope method, total and per phase. A phase is
the sum of the inclusive costs (callgrind_annotate --inclusive=yes) of the
functions that stand for it (PHASES); the sets are chosen so that none of
them calls another, so phases add up; "other" is the rest of the total
(the event loop, the writer's bookkeeping, libuv, syscalls' user side)."""
import json
import re
import subprocess
import sys

# phase -> function names (exact, as callgrind_annotate prints them).
PHASES = {
    "ingest": {
        # frame decode: protobuf-c unpack into the arena + UTF-8/field checks
        "decode": ["sl_frame_decode"],
        # the shared event checks, identity stamping, pipelines, the copy
        # of Publish.events into the stored EventBatch (sl_pb_next_field)
        "pipeline": ["sl_ingest_event_check", "sl_auth_stamp_batch",
                     "sl_pipes_apply", "sl_pb_next_field"],
        "compress": ["ZSTD_compress2", "ZSTD_compress_usingCDict",
                     "ZSTD_compressCCtx", "ZSTD_compress"],
        "checksum": ["XXH3_64bits", "XXH3_64bits_withSeed", "XXH64"],
        "lmdb": ["mdb_put", "mdb_txn_commit", "mdb_txn_begin", "mdb_get",
                 "mdb_cursor_get", "mdb_cursor_del", "mdb_del", "mdb_stat",
                 "mdb_cursor_open", "mdb_txn_abort"],
        # the Ack: completion on the loop thread, encode, write
        "ack": ["pending_done"],
    },
    "drain": {
        # the store cursor: LMDB reads, checksum, decompression (also the
        # status sampler's reads, sync__sample, which calls it)
        "read_back": ["sl_store_cursor_next", "sl_store_cursor_open",
                      "sl_store_cursor_close"],
        # stored events to records: splitting the batch, record timestamps,
        # keys, values and headers (sync__produce without librdkafka's part)
        "encode": ["sl_sync_event_next", "sync__record_ts_ms",
                   "sync__json_value", "sync__produce",
                   "-rd_kafka_produceva"],
        # librdkafka: produce calls and polls on the uplink thread, and every
        # thread that is not sluice's own (its broker and main threads, the
        # committer's transaction calls)
        "produce": ["rd_kafka_produceva", "rd_kafka_poll", "rd_kafka_flush",
                    "start_thread", "-uplink_main", "-writer_main"],
    },
}
LINE = re.compile(r"^\s*([\d,]+) \([ \d.]+%\)\s+(.*)$")


def profile(path):
    """{function: inclusive Ir} and the program total of one profile."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
        capture_output=True, text=True, check=True).stdout
    total, funcs = None, {}
    for line in out.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        rest = m.group(2)
        if rest.startswith("PROGRAM TOTALS"):
            total = ir
            continue
        name = rest.split(" [", 1)[0]
        name = name.rsplit(":", 1)[-1]
        if "'" in name:  # a recursion level, already inside the outer one
            continue
        funcs[name] = funcs.get(name, 0) + ir
    return total, funcs


def slope(work, kind, n1, n2):
    t1, f1 = profile(f"{work}/{kind}.{n1}.out")
    t2, f2 = profile(f"{work}/{kind}.{n2}.out")
    d = n2 - n1
    res = {"instructions_per_event": round((t2 - t1) / d), "n1": n1, "n2": n2,
           "ir_n1": t1, "ir_n2": t2}
    phases, acc = {}, 0
    for ph, names in PHASES[kind].items():
        v = 0
        for n in names:  # "-name": its inclusive cost is subtracted
            sign, n = (-1, n[1:]) if n.startswith("-") else (1, n)
            v += sign * (f2.get(n, 0) - f1.get(n, 0))
        phases[ph] = round(v / d)
        acc += v
    phases["other"] = round((t2 - t1 - acc) / d)
    res["phases"] = phases
    return res


def main():
    work, n1, n2, dn1, dn2, drain, only, base_path = sys.argv[1:]
    out = {"unit": "instructions per event (callgrind Ir, slope N1..N2)"}
    if only != "drain":
        out["ingest"] = slope(work, "ingest", int(n1), int(n2))
        try:
            b = open(f"{work}/ingest.{n2}.bytes").read().strip()
            out["ingest"]["stored_bytes_per_event"] = float(b)
        except (OSError, ValueError):
            pass
    if only != "ingest":
        out["drain"] = (slope(work, "drain", int(dn1), int(dn2))
                        if drain == "measured" else "skipped")
    try:
        base = json.load(open(base_path))
    except OSError:
        base = {}
    for kind in ("ingest", "drain"):
        cur, b = out.get(kind), base.get(kind)
        if isinstance(cur, dict) and isinstance(b, dict):
            cur["baseline"] = b["instructions_per_event"]
            cur["ratio_to_baseline"] = round(
                cur["instructions_per_event"] / b["instructions_per_event"], 3)
            print(f"cost: {kind}: {cur['instructions_per_event']} "
                  f"instructions/event, {cur['ratio_to_baseline']} of the "
                  f"baseline ({b['instructions_per_event']})", file=sys.stderr)
    print(json.dumps(out))


main()
