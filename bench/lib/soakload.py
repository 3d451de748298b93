#!/usr/bin/env python3
"""Open-loop load generator of bench/soak: a constant request rate, a distinct participant
in every request, plain HTTP/1.1 keep-alive to meetgate. Standard library only.

Request i (0-based) is scheduled at start + i / rate and removes participant number
+99<12-digit i> with participantID <prefix>-<i>, so every removal is distinct and the
audit log can be counted exactly. A request waits for a free connection if all are busy;
its latency is measured from its scheduled time (no coordinated omission) and its service
time from when it was written.

Writes a JSON summary (--out) and the sent request indexes with their statuses (--log, one
"<i> <status>" line each; status 0 = transport error).

usage: soakload.py --url URL --rate R --secs S [--conns C] [--prefix P] --out FILE --log FILE
"""
import argparse
import asyncio
import json
import time
import urllib.parse

MAX_CONNS = 512


class Conn:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer


async def open_conn(host, port):
    reader, writer = await asyncio.open_connection(host, port)
    return Conn(reader, writer)


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    close = headers.get("connection", "").lower() == "close"
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        n = int(headers.get("content-length", "0"))
        if n:
            await reader.readexactly(n)
    return status, close


def pct(vals, p):
    return vals[min(len(vals) - 1, int(len(vals) * p))] if vals else None


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--secs", type=float, required=True)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--prefix", default="soak")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    target = u.path + ("?" + u.query if u.query else "")

    idle = asyncio.Queue()
    opened = 0
    for _ in range(a.conns):
        idle.put_nowait(await open_conn(host, port))
        opened += 1
    total = int(a.rate * a.secs)
    statuses = {}
    errors = {}
    latency, service = [], []
    log = open(a.log, "w")
    state = {"open": a.conns, "max_open": a.conns, "in_flight": 0, "max_in_flight": 0}

    async def get_conn():
        nonlocal opened
        if idle.empty() and state["open"] < MAX_CONNS:
            state["open"] += 1
            state["max_open"] = max(state["max_open"], state["open"])
            opened += 1
            try:
                return await open_conn(host, port)
            except OSError:
                state["open"] -= 1
                raise
        return await idle.get()

    async def one(i, scheduled):
        body = ('{"bulkDelAttendInfo":[{"number":"+99%012d","participantID":"%s-%d"}]}'
                % (i, a.prefix, i)).encode()
        req = (("POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                "X-Caller-Id: bench-soak\r\nContent-Length: %d\r\n\r\n") % (target, host, port, len(body))
               ).encode() + body
        status = 0
        state["in_flight"] += 1
        state["max_in_flight"] = max(state["max_in_flight"], state["in_flight"])
        conn = None
        try:
            conn = await get_conn()
            sent = time.monotonic()
            conn.writer.write(req)
            await conn.writer.drain()
            status, close = await asyncio.wait_for(read_response(conn.reader), a.timeout)
            done = time.monotonic()
            latency.append(done - scheduled)
            service.append(done - sent)
            if close:
                conn.writer.close()
                state["open"] -= 1
            else:
                idle.put_nowait(conn)
            conn = None
        except Exception as e:  # noqa: BLE001 - every failure is counted
            key = type(e).__name__
            errors[key] = errors.get(key, 0) + 1
            if conn is not None:
                conn.writer.close()
                state["open"] -= 1
        finally:
            state["in_flight"] -= 1
        statuses[status] = statuses.get(status, 0) + 1
        log.write("%d %d\n" % (i, status))

    tasks = []
    start = time.monotonic()
    late = 0
    for i in range(total):
        scheduled = start + i / a.rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.01:
            late += 1
        tasks.append(asyncio.ensure_future(one(i, scheduled)))
        if len(tasks) >= 4096:
            tasks = [t for t in tasks if not t.done()]
    send_end = time.monotonic()
    await asyncio.gather(*tasks)
    end = time.monotonic()
    log.close()
    latency.sort()
    service.sort()
    ok = statuses.get(200, 0)
    out = {
        "url": a.url, "rate": a.rate, "secs": a.secs, "scheduled": total,
        "sent_secs": send_end - start, "wall_secs": end - start,
        "achieved_rps": total / (send_end - start) if send_end > start else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": errors,
        "ok": ok, "non200": total - ok,
        "late_dispatch": late,
        "connections_opened": opened, "max_open_connections": state["max_open"],
        "max_in_flight": state["max_in_flight"],
        "latency_ms": {k: (pct(latency, p) * 1e3 if latency else None)
                       for k, p in (("p50", .5), ("p90", .9), ("p99", .99), ("p999", .999), ("max", 1.0))},
        "service_ms": {k: (pct(service, p) * 1e3 if service else None)
                       for k, p in (("p50", .5), ("p99", .99), ("max", 1.0))},
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
