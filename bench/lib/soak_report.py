#!/usr/bin/env python3
"""Report of bench/soak: counts the run's audit records, checks them against the requests
sent, and writes bench/results/soak-<ts>.md. Parameters come from bench/soak's environment.

usage: soak_report.py RAW_DIR OUT_MD AUDIT_DIR REQUESTS_LOG
"""
import glob, json, os, re, string, sys
E = os.environ


def T(text):
    """$NAME in text -> the environment value."""
    return string.Template(text).safe_substitute(E)


raw, out, audit, reqlog = sys.argv[1:5]
load = json.load(open(os.path.join(raw, "load.json")))
sent = {}
for line in open(reqlog):
    i, st = line.split()
    sent[int(i)] = int(st)
types = {}
intent_numbers = {}
files = sorted(f for f in glob.glob(os.path.join(audit, "audit.jsonl*"))
               if re.search(r"audit\.jsonl(\.[0-9]+)?$", f))
for f in files:
    for line in open(f, encoding="utf-8"):
        try:
            r = json.loads(line)
        except ValueError:
            types["(unparsable)"] = types.get("(unparsable)", 0) + 1
            continue
        t = r.get("type")
        types[t] = types.get(t, 0) + 1
        if t == "intent":
            for p in r.get("participants", []):
                m = re.match(r"\+99(\d{12})$", p.get("number", ""))
                if m:
                    n = int(m.group(1))
                    intent_numbers[n] = intent_numbers.get(n, 0) + 1
requests = len(sent)
ok = sum(1 for s in sent.values() if s == 200)
records = types.get("intent", 0) + types.get("outcome", 0)
missing = [i for i in sent if i not in intent_numbers]
dupes = [i for i, c in intent_numbers.items() if c > 1]
extra = [i for i in intent_numbers if i not in sent]
samples = [l.rstrip("\n").split(",") for l in open(os.path.join(raw, "samples.csv"))][1:]
by = {s[1]: s for s in samples}
def val(label, col):
    return int(by[label][col]) if label in by else None
rss_w, rss_e, fd_w, fd_e = val("warm", 2), val("end", 2), val("warm", 3), val("end", 3)
def growth(a, b):
    return None if not a or b is None else (b - a) / a
g_rss, g_fd = growth(rss_w, rss_e), growth(fd_w, fd_e)
errors = load["non200"]
verify = open(os.path.join(raw, "audit-verify.txt")).read().strip()
checks = [
    ("errors = 0", errors == 0, "%d of %d (statuses %s, transport errors %s)" % (
        errors, requests, load["statuses"], load["transport_errors"] or "none")),
    ("audit records = 2 × requests", records == 2 * requests and not missing and not dupes and not extra,
     "intent %d + outcome %d = %d for %d requests; participants without an intent %d, with several %d, "
     "unknown %d" % (types.get("intent", 0), types.get("outcome", 0), records, requests, len(missing),
                     len(dupes), len(extra))),
    ("audit verify", E["VERIFY"] == "ok", verify.splitlines()[-1] if verify else "no output"),
    ("RSS growth ≤ 10 %", g_rss is not None and g_rss <= 0.10,
     "%s → %s KiB (%+.1f %%) from the end of the warm-up to the end of the load" % (
         rss_w, rss_e, (g_rss or 0) * 100)),
    ("open fds growth ≤ 10 %", g_fd is not None and g_fd <= 0.10,
     "%s → %s (%+.1f %%)" % (fd_w, fd_e, (g_fd or 0) * 100)),
    ("meetgate exits 0 on SIGTERM", E["MG_EXIT"] == "0", "exit " + E["MG_EXIT"]),
]
def token_calls():
    out = []
    try:
        for line in open(os.path.join(raw, "metrics.txt")):
            m = re.match(r'meetgate_token_(calls|failures)_total\{kind="([a-z_]+)"\} (\S+)', line)
            if m:
                out.append(("%s %s" % (m.group(2), "calls" if m.group(1) == "calls" else "failures"),
                            int(float(m.group(3)))))
    except FileNotFoundError:
        pass
    return out


sim = {}
try:
    sim = json.load(open(os.path.join(raw, "sim-stats.json")))
except Exception:
    pass
L = [T("# meetgate soak, $TS"), ""]
if float(E["MINUTES"]) < 10:
    L += [T("> **Short run** (MINUTES=$MINUTES; the soak's setting is 10): a check of the script, not a soak result."), ""]
L += [T("$RATE requests/s for $SECS s through meetgate (full path, durable audit, rate limits off) against "
        "meeting-sim with an upstream latency of $UPSTREAM_LATENCY ms and a control-token lifetime of "
        "$TOKEN_LIFETIME_SECS s; every request removes a distinct participant. Load generator: "
        "bench/lib/soakload.py (open loop, $CONNS keep-alive connections opened up front)."), "",
      T("- load at start: $LOAD_START"), T("- load at end: $LOAD_END"), "",
      "| check | status | measured |", "|---|---|---|"]
for name, ok_, det in checks:
    L.append("| %s | %s | %s |" % (name, "**met**" if ok_ else "**not met**", det))
L += ["", "## Load", "",
      "scheduled %d requests over %.1f s (achieved %.1f/s; %d dispatched more than 10 ms late), all answered "
      "after %.1f s; connections opened %d (at most %d open), at most %d in flight." % (
          load["scheduled"], load["sent_secs"], load["achieved_rps"] or 0, load["late_dispatch"],
          load["wall_secs"], load["connections_opened"], load["max_open_connections"], load["max_in_flight"]),
      "",
      "latency from the scheduled time (ms): p50 %.1f, p90 %.1f, p99 %.1f, p99.9 %.1f, max %.1f" % tuple(
          load["latency_ms"][k] or 0 for k in ("p50", "p90", "p99", "p999", "max")),
      "",
      "meetgate's token calls (`/metrics`): %s." % (", ".join(
          "%s %s" % (k, v) for k, v in token_calls()) or "n/a"),
      "",
      "upstream (simulator) saw %s removals, %s control-token calls, %s connections." % (
          sim.get("calls", {}).get("delete_attendees", "?"), sim.get("calls", {}).get("control_token", "?"),
          sim.get("connections", "?")),
      "", "## Audit log", "", "records by type: %s; files: %s" % (
          ", ".join("%s %d" % kv for kv in sorted(types.items())), ", ".join(os.path.basename(f) for f in files)),
      "", "```", verify, "```", "",
      "## meetgate's memory and descriptors", "",
      "| s since load start | sample | VmRSS (KiB) | open fds | threads |", "|---|---|---|---|---|"]
for s in samples:
    L.append("| %s | %s | %s | %s | %s |" % tuple(s))
L += ["", T("Raw data: bench/results/soak-$TS/ (load.json, samples.csv, metrics.txt, sim-stats.json, audit-verify.txt)."), ""]
open(out, "w").write("\n".join(L))
print("\n".join(L[: 14 + len(checks)]))
