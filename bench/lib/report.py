#!/usr/bin/env python3
"""Turns the raw data of one bench/run into a Markdown report, a CSV and a JSON summary.

usage: report.py RAW_DIR OUT_MD

RAW_DIR holds what bench/run wrote: env.txt, fsync.json, validate-bench.json,
mem-{idle,after}-<target>.json, phases.jsonl and, per phase, p<pass>-<target>-<kind>.*
(wrk text or oha summary, proc0/proc1 CPU snapshots, sim0/sim1 simulator stats, and for
meetgate metrics0/metrics1 scrapes of /metrics).
"""
import csv
import json
import os
import re
import statistics
import sys

TARGET_NAMES = {
    "meetgate": "meetgate",
    "nginx": "nginx",
    "haproxy": "HAProxy",
    "njs": "nginx + njs",
    "direct": "direct (no proxy)",
}
GATEWAYS = ["meetgate", "nginx", "haproxy", "njs"]
GW_CPU_ID = ["0"]  # set from params.json


def load_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except Exception:  # noqa: BLE001
        return default


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, digits=2, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return "{:,.0f}{}".format(v, unit).replace(",", " ")
    return "{:.{d}f}{}".format(v, unit, d=digits)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def pct_s(v):
    return "n/a" if v is None else "%.0f %%" % (v * 100)


def fmt_ratio(r):
    return "n/a" if r is None else "{:.2f}×".format(r)


# --- Prometheus text --------------------------------------------------------------------
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)')


def parse_metrics(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                m = LINE.match(line)
                if m:
                    out[(m.group(1), m.group(2) or "")] = float(m.group(3))
    except FileNotFoundError:
        return None
    return out


def hist_diff(m0, m1, name):
    """Bucket counts of histogram `name` between two scrapes: [(le, count)], total, sum."""
    buckets = []
    for (n, labels), v in m1.items():
        if n == name + "_bucket":
            le = re.search(r'le="([^"]+)"', labels).group(1)
            le = float("inf") if le == "+Inf" else float(le)
            buckets.append((le, v - m0.get((n, labels), 0.0)))
    buckets.sort()
    count = m1.get((name + "_count", ""), 0) - m0.get((name + "_count", ""), 0)
    total = m1.get((name + "_sum", ""), 0) - m0.get((name + "_sum", ""), 0)
    return buckets, count, total


def hist_quantile(buckets, count, q):
    """Linear interpolation inside the bucket, as Prometheus' histogram_quantile."""
    if not buckets or count <= 0:
        return None
    rank = q * count
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / max(c - prev_c, 1e-9))
        prev_le, prev_c = le, c
    return prev_le


def counter(m, name):
    return sum(v for (n, _), v in m.items() if n == name)


def meetgate_view(base):
    m0, m1 = parse_metrics(base + ".metrics0.txt"), parse_metrics(base + ".metrics1.txt")
    if not m0 or not m1:
        return None
    view = {}
    for short, name in (("added", "meetgate_added_latency_seconds"),
                        ("audit_wait", "meetgate_audit_wait_seconds"),
                        ("request", "meetgate_request_duration_seconds"),
                        ("upstream", "meetgate_upstream_duration_seconds")):
        b, n, s = hist_diff(m0, m1, name)
        view[short] = {
            "count": n,
            "mean_ms": (s / n * 1e3) if n else None,
            "p50_ms": (hist_quantile(b, n, 0.5) or 0) * 1e3 if n else None,
            "p99_ms": (hist_quantile(b, n, 0.99) or 0) * 1e3 if n else None,
        }
    rec = counter(m1, "meetgate_audit_records_total") - counter(m0, "meetgate_audit_records_total")
    syn = counter(m1, "meetgate_audit_syncs_total") - counter(m0, "meetgate_audit_syncs_total")
    view["audit_records"] = rec
    view["audit_syncs"] = syn
    view["audit_mean_batch"] = rec / syn if syn else None
    view["audit_sync_avg_ms"] = m1.get(("meetgate_audit_sync_seconds_avg", ""), 0) * 1e3
    view["audit_batch_max"] = m1.get(("meetgate_audit_batch_size_max", ""))
    req = {k[1]: v - m0.get(k, 0) for k, v in m1.items() if k[0] == "meetgate_requests_total"}
    view["requests"] = {k: v for k, v in req.items() if v}
    return view


# --- one phase ------------------------------------------------------------------------------
def read_wrk(path):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("WRKJSON "):
                    return json.loads(line[len("WRKJSON "):])
    except FileNotFoundError:
        pass
    return None


def read_stat(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                vals = [int(x) for x in parts[1:]]
                idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
                out[parts[0]] = (sum(vals[:8]), idle)
    except FileNotFoundError:
        return None
    return out


def core_busy(p0, p1):
    """Busy fraction of each CPU between two /proc/stat snapshots (everything on it, not
    only our processes)."""
    a, b = read_stat(p0), read_stat(p1)
    if not a or not b:
        return None
    out = {}
    for cpu in b:
        if cpu in a:
            total = b[cpu][0] - a[cpu][0]
            idle = b[cpu][1] - a[cpu][1]
            out[cpu] = (total - idle) / total if total > 0 else None
    return out


def read_disk(path):
    try:
        with open(path) as f:
            v = f.read().split()
        return [int(x) for x in v[3:]]
    except (FileNotFoundError, ValueError):
        return None


def disk_rates(p0, p1, wall):
    """Writes/s, MB/s written and flushes/s on the audit disk during the phase (all
    processes)."""
    a, b = read_disk(p0), read_disk(p1)
    if not a or not b or wall <= 0:
        return None
    out = {"writes_per_s": (b[4] - a[4]) / wall, "write_mb_per_s": (b[6] - a[6]) * 512 / 1e6 / wall}
    if len(a) > 15 and len(b) > 15:
        out["flushes_per_s"] = (b[15] - a[15]) / wall
    return out


def phase_record(raw, ph):
    base = os.path.join(raw, "p%d-%s-%s" % (ph["pass"], ph["target"], ph["kind"]))
    rec = dict(ph)
    rec["wall"] = ph["t1"] - ph["t0"]
    p0, p1 = load_json(base + ".proc0.json", {}), load_json(base + ".proc1.json", {})
    s0, s1 = load_json(base + ".sim0.json", {}), load_json(base + ".sim1.json", {})
    rec["upstream_conns_opened"] = (s1.get("connections", 0) - s0.get("connections", 0)) if s0 and s1 else None
    rec["upstream_deletes"] = ((s1.get("calls", {}).get("delete_attendees", 0)
                                - s0.get("calls", {}).get("delete_attendees", 0)) if s0 and s1 else None)
    rec["core_busy"] = core_busy(base + ".stat0", base + ".stat1")
    rec["disk"] = disk_rates(base + ".disk0", base + ".disk1", rec["wall"])
    rec["fsync_before"] = load_json(base + ".fsync.json")
    cpu_s = None
    if p0.get("procs") and p1.get("procs"):
        cpu_s = (p1["ticks"] - p0["ticks"]) / p1["clk_tck"]
    rec["cpu_s"] = cpu_s
    if ph["kind"] == "wrk":
        w = read_wrk(base + ".txt")
        if w is None:
            rec.update(accepted=False, reason="no wrk result", requests=0)
            return rec
        errs = sum(w["errors"].values())
        secs = w["duration_us"] / 1e6
        rec.update(requests=w["requests"], rps=w["requests"] / secs, errors=errs,
                   latency_ms={k: v / 1e3 for k, v in w["latency_us"].items()})
        rec["accepted"] = errs == 0 and w["requests"] > 0
        rec["reason"] = "" if rec["accepted"] else "%d errors/non-2xx" % errs
    else:
        o = load_json(base + ".summary.json", {})
        if not o or "latency_ms" not in o:
            rec.update(accepted=False, reason=o.get("error", "no oha result") if o else "no oha result",
                       requests=0)
            return rec
        rate = ph["rate"]
        n = o["n200"] + o["non200"]
        rec.update(requests=n, rps=o["achieved_rps"], non200=o["non200"],
                   latency_ms=o["latency_ms"], oha_all=o.get("oha_percentiles_all_s"),
                   discarded=o.get("discarded"))
        reasons = []
        if o["non200"]:
            reasons.append("%d non-200 %s" % (o["non200"], {**o["status"], **o["errors"]}))
        if o["achieved_rps"] < 0.99 * rate:
            reasons.append("achieved %.0f/s < 99%% of %d/s" % (o["achieved_rps"], rate))
        rec["accepted"] = not reasons
        rec["reason"] = "; ".join(reasons)
    gw_core = "cpu%s" % GW_CPU_ID[0]
    if rec["core_busy"] and rec["core_busy"].get(gw_core) is not None and rec.get("requests"):
        # Everything on the gateway's core (its processes, the interrupts and kernel threads
        # working for them, and any other load), per 1000 requests.
        rec["core_ms_per_1000"] = rec["core_busy"][gw_core] * rec["wall"] * 1e3 / (rec["requests"] / 1000)
    if cpu_s is not None and rec.get("requests"):
        rec["cpu_ms_per_1000"] = cpu_s * 1e3 / (rec["requests"] / 1000)
        rec["cpu_util"] = cpu_s / rec["wall"] if rec["wall"] > 0 else None
    if ph["target"] == "meetgate":
        rec["meetgate_view"] = meetgate_view(base)
    return rec


# --- the report -------------------------------------------------------------------------------
def main():
    raw, out_md = sys.argv[1], sys.argv[2]
    env = {}
    with open(os.path.join(raw, "env.txt")) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                env[k] = v
    params = load_json(os.path.join(raw, "params.json"), {})
    passes, secs = params.get("passes", 0), params.get("secs", 0)
    rates, conns, targets = params.get("rates", [1000]), params.get("conns"), params.get("targets", [])
    gw_cpu, aux_cpu = params.get("gw_cpu"), params.get("aux_cpu")
    GW_CPU_ID[0] = gw_cpu

    phases = []
    with open(os.path.join(raw, "phases.jsonl")) as f:
        for line in f:
            if line.strip():
                phases.append(phase_record(raw, json.loads(line)))
    fsync = load_json(os.path.join(raw, "fsync.json"), {})
    vbench = load_json(os.path.join(raw, "validate-bench.json"), {})
    mem_idle = {t: load_json(os.path.join(raw, "mem-idle-%s.json" % t), {}) for t in targets}
    mem_after = {t: load_json(os.path.join(raw, "mem-after-%s.json" % t), {}) for t in targets}

    def get(t, kind, p=None):
        return [r for r in phases if r["target"] == t and r["kind"] == kind
                and (p is None or r["pass"] == p)]

    summary = {}
    for t in targets:
        s = {}
        wrk = [r for r in get(t, "wrk") if r["accepted"]]
        s["throughput"] = median([r["rps"] for r in wrk])
        s["throughput_passes"] = "%d/%d" % (len(wrk), len(get(t, "wrk")))
        s["wrk_cpu_util"] = median([r.get("cpu_util") for r in wrk])
        s["wrk_core_gw"] = median([(r.get("core_busy") or {}).get("cpu%s" % gw_cpu) for r in wrk])
        s["wrk_core_aux"] = median([(r.get("core_busy") or {}).get("cpu%s" % aux_cpu) for r in wrk])
        for rate in rates:
            kind = "oha%d" % rate
            acc = [r for r in get(t, kind) if r["accepted"]]
            s["passes_%d" % rate] = "%d/%d" % (len(acc), len(get(t, kind)))
            for q in ("p50", "p99", "p999"):
                s["abs_%s_%d" % (q, rate)] = median([r["latency_ms"][q] for r in acc])
                added = []
                for r in acc:
                    d = [x for x in get("direct", kind, r["pass"]) if x["accepted"]]
                    if d and t != "direct":
                        added.append(r["latency_ms"][q] - d[0]["latency_ms"][q])
                s["added_%s_%d" % (q, rate)] = median(added) if t != "direct" else None
                s["added_n_%d" % rate] = len(added)
            s["cpu_%d" % rate] = median([r.get("cpu_ms_per_1000") for r in acc]) if t != "direct" else None
            s["core_%d" % rate] = median([r.get("core_ms_per_1000") for r in acc])
        mi, ma = mem_idle.get(t) or {}, mem_after.get(t) or {}
        mib = lambda d, k: d[k] / 1024 if d and k in d else None  # noqa: E731
        s["rss_idle"], s["pss_idle"] = mib(mi, "rss_kb"), mib(mi, "pss_kb")
        s["rss_after"], s["pss_after"] = mib(ma, "rss_kb"), mib(ma, "pss_kb")
        s["rss_peak"] = mib(ma, "hwm_kb")
        s["procs"] = len(ma.get("procs", [])) if ma else 0
        summary[t] = s

    r1, r2 = rates[0], rates[1] if len(rates) > 1 else rates[0]
    # Every figure of the main table, in order: (key, heading, digits).
    cols = [("throughput", "max throughput (req/s, wrk)", 0)]
    for rate in rates:
        for q, qn in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            cols.append(("added_%s_%d" % (q, rate), "added %s @%d/s (ms)" % (qn, rate), 3))
    cols.append(("cpu_%d" % r1, "CPU ms / 1000 req @%d/s" % r1, 1))
    if r2 != r1:
        cols.append(("cpu_%d" % r2, "CPU ms / 1000 req @%d/s" % r2, 1))
    cols.append(("core_%d" % r1, "CPU%s ms / 1000 req @%d/s (whole core)" % (gw_cpu, r1), 1))
    cols += [("rss_idle", "RSS idle (MiB)", 1), ("pss_idle", "PSS idle (MiB)", 1),
             ("rss_after", "RSS after load (MiB)", 1), ("pss_after", "PSS after load (MiB)", 1),
             ("rss_peak", "peak RSS (MiB, VmHWM)", 1)]

    reduced = passes < 5 or secs < 30
    L = []
    L.append("# meetgate side-by-side benchmark, %s" % env.get("timestamp_utc", "?"))
    L.append("")
    if reduced:
        L.append("> **Reduced run** (PASSES=%d, SECS=%d; the benchmark's setting is PASSES=5 SECS=30): "
                 "a check of the pipeline, not a result to quote." % (passes, secs))
        L.append("")
    L.append("%d passes × %d s per phase, targets %s in rotated order; per target and pass: `wrk -t1 -c%s` "
             "(max throughput), then `oha -q R --latency-correction -c%s` at R = %s req/s. Gateways pinned to CPU "
             "%s, meeting-sim (`--fast`, 1 thread) and the load generator to CPU %s."
             % (passes, secs, ", ".join(targets), conns, conns, " and ".join(map(str, rates)), gw_cpu, aux_cpu))
    L.append("")
    L.append("- machine: %s, %s, %s" % (env.get("cpu"), env.get("mem"), env.get("kernel")))
    L.append("- meetgate %s (git %s); %s; njs %s; %s; %s; %s"
             % (env.get("meetgate", "").replace("meetgate ", ""), env.get("git"), "nginx " + env.get("nginx", ""),
                env.get("njs"), env.get("haproxy", "").split(" - ")[0], env.get("wrk", "").split(" [")[0],
                env.get("oha")))
    L.append("- audit disk: %s" % env.get("audit_disk"))
    L.append("- load at start: %s" % env.get("load_start"))
    L.append("- load at end: %s" % env.get("load_end", "n/a"))
    L.append("")

    L.append("## Results")
    L.append("")
    L.append("Medians over accepted passes. *added* = the target's latency minus the direct baseline's in the "
             "same pass (coordinated-omission corrected, first %s s of each oha run left out). CPU = utime + "
             "stime of the gateway's processes (nginx/HAProxy: master + worker) over the oha run, per 1000 "
             "requests. Memory summed over the gateway's processes (`smaps_rollup`; idle = after start, before "
             "any request; after = after all passes)." % params.get("discard_secs", 1))
    L.append("")
    L.append("| target | " + " | ".join(c[1] for c in cols) + " |")
    L.append("|---|" + "---|" * len(cols))
    for t in targets:
        L.append("| %s | " % TARGET_NAMES[t] + " | ".join(fmt(summary[t].get(k), d) for k, _, d in cols) + " |")
    L.append("")
    L.append("Accepted passes (wrk / @%s): " % " / @".join(map(str, rates)) + "; ".join(
        "%s %s" % (TARGET_NAMES[t], " / ".join([summary[t]["throughput_passes"]] +
                                                  [summary[t]["passes_%d" % r] for r in rates]))
        for t in targets))
    L.append("")

    L.append("### Every figure as a ratio to nginx and to HAProxy")
    L.append("")
    L.append("Each cell: target ÷ nginx / target ÷ HAProxy (lower is better except for throughput).")
    L.append("")
    L.append("| target | " + " | ".join(c[1] for c in cols) + " |")
    L.append("|---|" + "---|" * len(cols))
    for t in targets:
        if t == "direct":
            continue
        cells = []
        for k, _, _ in cols:
            v = summary[t].get(k)
            a = ratio(v, summary.get("nginx", {}).get(k))
            b = ratio(v, summary.get("haproxy", {}).get(k))
            cells.append("%s / %s" % (fmt_ratio(a), fmt_ratio(b)))
        L.append("| %s | " % TARGET_NAMES[t] + " | ".join(cells) + " |")
    L.append("")

    # --- targets
    mg, ng, nj = summary.get("meetgate", {}), summary.get("nginx", {}), summary.get("njs", {})
    fs50, fs99 = fsync.get("p50_ms"), fsync.get("p99_ms")
    checks = []

    def check(name, ok, detail):
        checks.append((name, "n/a" if ok is None else ("**met**" if ok else "**not met**"), detail))

    thr_r = ratio(mg.get("throughput"), ng.get("throughput"))
    check("throughput ≥ 1.2 × nginx", None if thr_r is None else thr_r >= 1.2,
          "meetgate %s req/s = %s nginx (%s req/s)" % (fmt(mg.get("throughput"), 0), fmt_ratio(thr_r),
                                                      fmt(ng.get("throughput"), 0)))
    lim = 2 * fs50 + 0.3 if fs50 is not None else None
    a50 = mg.get("added_p50_%d" % r1)
    check("added p50 @%d/s ≤ 2 × fdatasync p50 + 0.3 ms" % r1,
          None if a50 is None or lim is None else a50 <= lim,
          "%s ms vs limit %s ms (fdatasync p50 %s ms)" % (fmt(a50, 3), fmt(lim, 3), fmt(fs50, 3)))
    c_mg, c_ng = mg.get("cpu_%d" % r1), ng.get("cpu_%d" % r1)
    check("CPU per 1000 requests ≤ nginx's (@%d/s)" % r1,
          None if c_mg is None or c_ng is None else c_mg <= c_ng,
          "meetgate %s ms, nginx %s ms (%s); whole gateway core: meetgate %s ms, nginx %s ms" % (
              fmt(c_mg, 1), fmt(c_ng, 1), fmt_ratio(ratio(c_mg, c_ng)), fmt(mg.get("core_%d" % r1), 1),
              fmt(ng.get("core_%d" % r1), 1)))
    peak, idle = mg.get("rss_peak"), mg.get("rss_idle")
    check("peak RSS ≤ 20 MiB", None if peak is None else peak <= 20, "%s MiB (VmHWM)" % fmt(peak, 1))
    check("idle RSS ≤ 8 MiB", None if idle is None else idle <= 8, "%s MiB" % fmt(idle, 1))
    # Validation cost: meetgate's validator (criterion, this machine, same core) against what
    # njs adds to nginx for the same check.
    pb, tj = vbench.get("parse_body/1 attendees"), vbench.get("to_json/1 attendees")
    mg_val = (pb["median_ns"] + tj["median_ns"]) / 1e3 if pb and tj else None  # ms per 1000 requests
    njs_extra = {}
    for rate in rates:
        a, b = nj.get("cpu_%d" % rate), ng.get("cpu_%d" % rate)
        njs_extra[rate] = a - b if a is not None and b is not None else None
    best = njs_extra.get(r2) if njs_extra.get(r2) is not None else njs_extra.get(r1)
    check("validation cost below nginx + njs",
          None if mg_val is None or best is None else mg_val < best,
          "meetgate parse_body + to_json: %s ms per 1000 requests (criterion); njs over plain nginx: %s "
          "ms per 1000 requests (CPU difference; %s); whole gateway: meetgate %s vs nginx + njs %s ms per 1000 "
          "@%d/s" % (fmt(mg_val, 3), fmt(best, 2),
                     ", ".join("@%d/s %s" % (r, fmt(v, 2)) for r, v in njs_extra.items()),
                     fmt(c_mg, 1), fmt(nj.get("cpu_%d" % r1), 1), r1))
    L.append("## Targets")
    L.append("")
    L.append("| target | status | measured |")
    L.append("|---|---|---|")
    for name, st, det in checks:
        L.append("| %s | %s | %s |" % (name, st, det))
    L.append("")
    if reduced:
        L.append("(Reduced run: the statuses above are indicative only.)")
        L.append("")

    # --- absolute latency
    L.append("## Absolute latency (ms, medians over accepted passes)")
    L.append("")
    hdr = []
    for rate in rates:
        hdr += ["p50 @%d" % rate, "p99 @%d" % rate, "p99.9 @%d" % rate]
    L.append("| target | " + " | ".join(hdr) + " | gateway CPU during wrk | CPU%s / CPU%s busy during wrk |"
             % (gw_cpu, aux_cpu))
    L.append("|---|" + "---|" * (len(hdr) + 2))
    for t in targets:
        cells = []
        for rate in rates:
            cells += [fmt(summary[t].get("abs_%s_%d" % (q, rate)), 3) for q in ("p50", "p99", "p999")]
        util = summary[t].get("wrk_cpu_util")
        L.append("| %s | %s | %s | %s / %s |" % (TARGET_NAMES[t], " | ".join(cells),
                                             "n/a" if util is None else "%.0f %%" % (util * 100),
                                             pct_s(summary[t].get("wrk_core_gw")),
                                             pct_s(summary[t].get("wrk_core_aux"))))
    L.append("")
    L.append("Gateway CPU during wrk near 100 %% means the gateway (one core) was the bottleneck. Otherwise "
             "either CPU%s (simulator + wrk, busy near 100 %%) was, or the gateway was waiting (meetgate: for "
             "fdatasync; with wrk's %s connections in a closed loop, throughput ≈ %s ÷ latency). Core busy "
             "counts everything on the core, other work on the machine included." % (aux_cpu, conns, conns))
    L.append("")

    # --- fsync, validator
    L.append("## The audit disk's fdatasync (the floor of a durable gateway)")
    L.append("")
    if fsync:
        L.append("%d × (append 300 bytes, fdatasync) in the audit directory (%s, %s): p50 %s ms, p90 %s ms, "
                 "p99 %s ms, mean %s ms, max %s ms." % (fsync["n"], fsync.get("device"), fsync.get("fstype"),
                                                         fmt(fs50, 3), fmt(fsync.get("p90_ms"), 3), fmt(fs99, 3),
                                                         fmt(fsync.get("mean_ms"), 3), fmt(fsync.get("max_ms"), 3)))
        if fsync.get("cpu_us_per_sync") is not None:
            L.append("")
            L.append("CPU of the probing process per durable append (write + fdatasync, user + system): %s µs; "
                     "two durable records per request at batch size 1 cost %s ms per 1000 requests before any "
                     "HTTP, TLS or validation work." % (fmt(fsync["cpu_us_per_sync"], 1),
                                                       fmt(2 * fsync["cpu_us_per_sync"], 1)))
    L.append("")
    if vbench:
        L.append("## Validator micro-benchmark (`cargo bench --bench validate`, pinned to CPU %s)" % gw_cpu)
        L.append("")
        L.append("| benchmark | median | mean |")
        L.append("|---|---|---|")
        for k, v in vbench.items():
            L.append("| %s | %s µs | %s µs |" % (k, fmt(v["median_ns"] / 1e3, 3), fmt(v["mean_ns"] / 1e3, 3)))
        L.append("")

    # --- meetgate's own view
    mv = [r for r in phases if r["target"] == "meetgate" and r.get("meetgate_view")]
    if mv:
        L.append("## meetgate's own view (`/metrics`, difference over each phase)")
        L.append("")
        L.append("Histogram quantiles are interpolated inside power-of-two buckets (coarse).")
        L.append("")
        L.append("| pass | phase | requests | audit records | fdatasyncs | mean batch | audit wait p50 / p99 (ms) "
                 "| added p50 / p99 / mean (ms) | upstream p50 (ms) | fdatasync probe just before: p50 / p99 (ms) |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in mv:
            v = r["meetgate_view"]
            fb = r.get("fsync_before") or {}
            L.append("| %d | %s | %s | %d | %d | %s | %s / %s | %s / %s / %s | %s | %s / %s |" % (
                r["pass"], r["kind"], fmt(v["added"]["count"], 0), v["audit_records"], v["audit_syncs"],
                fmt(v["audit_mean_batch"], 1), fmt(v["audit_wait"]["p50_ms"], 3), fmt(v["audit_wait"]["p99_ms"], 3),
                fmt(v["added"]["p50_ms"], 3), fmt(v["added"]["p99_ms"], 3), fmt(v["added"]["mean_ms"], 3),
                fmt(v["upstream"]["p50_ms"], 3), fmt(fb.get("p50_ms"), 3), fmt(fb.get("p99_ms"), 3)))
        L.append("")

    # --- per phase
    L.append("## Every phase")
    L.append("")
    L.append("| pass | target | phase | verdict | req/s | p50 / p99 / p99.9 (ms) | CPU ms/1000 | CPU%s ms/1000 | "
             "gateway CPU | CPU%s / CPU%s busy | disk writes/s, MB/s, flushes/s | upstream conns opened | load1 |"
             % (gw_cpu, gw_cpu, aux_cpu))
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in phases:
        lat = r.get("latency_ms") or {}
        util = r.get("cpu_util")
        cb = r.get("core_busy") or {}
        dk = r.get("disk") or {}
        L.append("| %d | %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %s / %s | %s, %s, %s | %s | %s |" % (
            r["pass"], TARGET_NAMES[r["target"]], r["kind"],
            "ok" if r["accepted"] else "**rejected**: " + r["reason"],
            fmt(r.get("rps"), 0), fmt(lat.get("p50"), 3), fmt(lat.get("p99"), 3), fmt(lat.get("p999"), 3),
            fmt(r.get("cpu_ms_per_1000"), 1) if r["target"] != "direct" else "n/a",
            fmt(r.get("core_ms_per_1000"), 1),
            "n/a" if util is None else "%.0f %%" % (util * 100),
            pct_s(cb.get("cpu%s" % gw_cpu)), pct_s(cb.get("cpu%s" % aux_cpu)),
            fmt(dk.get("writes_per_s"), 0), fmt(dk.get("write_mb_per_s"), 1), fmt(dk.get("flushes_per_s"), 0),
            fmt(r.get("upstream_conns_opened"), 0), r.get("load1")))
    L.append("")
    L.append("wrk latencies are not corrected for coordinated omission (closed loop); oha's are. \"CPU ms/1000\" "
             "is the gateway's processes' utime + stime; \"CPU%s ms/1000\" is everything that ran on the gateway's "
             "core (its processes, the interrupts, softirqs and kernel threads working for them — e.g. disk I/O "
             "completion for meetgate's fdatasyncs — and any other load: compare with the direct target, whose "
             "core is otherwise idle). Disk figures are for the whole audit device, all processes. \"upstream "
             "conns opened\" counts new TLS connections at the simulator during the phase (for the direct "
             "target: the load generator's own): near 0 means the gateway reused its pool." % gw_cpu)
    L.append("")

    # --- validation equivalence, audit verify, load
    p = os.path.join(raw, "invalid-bodies.md")
    if os.path.exists(p):
        L.append("## Invalid bodies: meetgate and nginx + njs refuse the same ones")
        L.append("")
        L.append("Status and `error_code` of the answer: `MEETGATE.*` refused by meetgate, `NJS.*` by the njs "
                 "script; `MMC.*` means the peer forwarded the body and the upstream (simulator) refused it.")
        L.append("")
        L.append(open(p).read().rstrip())
        L.append("")
    p = os.path.join(raw, "audit-verify.txt")
    if os.path.exists(p):
        L.append("## meetgate's audit log after the run (`meetgate audit verify`)")
        L.append("")
        L.append("```")
        L.append(open(p).read().strip())
        L.append("```")
        L.append("")
    p = os.path.join(raw, "load.txt")
    if os.path.exists(p):
        L.append("## Machine load per pass")
        L.append("")
        L.append("```")
        L.append(open(p).read().strip())
        L.append("```")
        L.append("")
    L.append("Raw data: `bench/results/%s/` (phases.csv, summary.json, wrk/oha outputs, /proc snapshots, "
             "simulator stats, meetgate /metrics scrapes, peer configs)." % os.path.basename(raw.rstrip("/")))
    L.append("")

    with open(out_md, "w") as f:
        f.write("\n".join(L))
    with open(os.path.join(raw, "summary.json"), "w") as f:
        json.dump({"summary": summary, "checks": checks, "fsync": fsync, "validate_bench": vbench}, f, indent=1)
    with open(os.path.join(raw, "phases.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pass", "target", "phase", "accepted", "reason", "requests", "rps", "p50_ms", "p99_ms",
                    "p999_ms", "cpu_s", "cpu_ms_per_1000", "cpu_util", "upstream_conns_opened", "load1"])
        for r in phases:
            lat = r.get("latency_ms") or {}
            w.writerow([r["pass"], r["target"], r["kind"], r["accepted"], r.get("reason", ""), r.get("requests"),
                        r.get("rps"), lat.get("p50"), lat.get("p99"), lat.get("p999"), r.get("cpu_s"),
                        r.get("cpu_ms_per_1000"), r.get("cpu_util"), r.get("upstream_conns_opened"),
                        r.get("load1")])
    with open(os.path.join(raw, "phases.json"), "w") as f:
        json.dump(phases, f, indent=1)


if __name__ == "__main__":
    main()
