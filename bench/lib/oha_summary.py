#!/usr/bin/env python3
"""Summarises one oha run (its JSON output and its per-request SQLite file) as JSON.

Latency is the coordinated-omission-corrected one (end - scheduled start, as oha's
--latency-correction), computed from the per-request records without the first DISCARD
seconds of the run: each of oha's connections is opened by the first request it sends
(TCP, and a TLS handshake for the direct target), and those requests land in that first
second; keeping them would put connection set-up, not forwarding, into the baseline's tail.
oha's own percentiles (all requests) are kept beside them.

usage: oha_summary.py OHA_JSON OHA_DB RATE SECS [DISCARD]
"""
import json
import sqlite3
import sys


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(len(sorted_vals) * p))]


def main():
    js_path, db_path, rate, secs = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    discard = float(sys.argv[5]) if len(sys.argv) > 5 else 1.0
    out = {"rate": rate, "secs": secs, "discard_secs": discard}
    try:
        js = json.load(open(js_path))
    except Exception as e:  # noqa: BLE001
        out["error"] = "no oha JSON: %s" % e
        print(json.dumps(out))
        return
    statuses = js.get("statusCodeDistribution") or {}
    errors = js.get("errorDistribution") or {}
    n200 = int(statuses.get("200", 0))
    out["status"] = statuses
    out["errors"] = errors
    out["n200"] = n200
    out["non200"] = sum(int(v) for k, v in statuses.items() if k != "200") + sum(int(v) for v in errors.values())
    out["achieved_rps"] = n200 / secs
    out["oha_percentiles_all_s"] = js.get("latencyPercentiles")
    try:
        db = sqlite3.connect(db_path)
        rows = db.execute(
            "select start_latency_correction, start, end, status from oha").fetchall()
    except Exception as e:  # noqa: BLE001
        out["error"] = "no oha database: %s" % e
        print(json.dumps(out))
        return
    lat = sorted(end - (sched if sched is not None else st)
                 for sched, st, end, status in rows if (sched if sched is not None else st) >= discard)
    out["n_records"] = len(rows)
    out["n_kept"] = len(lat)
    out["latency_ms"] = {k: (pct(lat, p) * 1e3 if lat else None) for k, p in
                         (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999), ("max", 1.0))}
    out["latency_ms"]["mean"] = sum(lat) / len(lat) * 1e3 if lat else None
    first = sorted(end - (sched if sched is not None else st) for sched, st, end, status in rows
                   if (sched if sched is not None else st) < discard)
    out["discarded"] = {"n": len(first), "max_ms": first[-1] * 1e3 if first else None}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
