-- wrk script: the same small JSON POST for every target (bench/run).
-- The path and query come from the URL given to wrk; headers given with -H are kept
-- (the direct target adds X-Conference-Authorization that way).
-- At the end it prints one JSON line, prefixed with "WRKJSON ", for bench/lib/report.py.
wrk.method = "POST"
wrk.body = '{"bulkDelAttendInfo":[{"number":"+991116003815","participantID":"ba9acb1e216d11eabc5165c2b91ad427"}]}'
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
