#!/usr/bin/env python3
"""fdatasync latency of a directory's disk: N x (append 300 bytes, fdatasync).

This is the floor under a durable gateway: meetgate makes an intent durable before it
forwards and an outcome durable before it answers. Prints one JSON object.

usage: fsync_probe.py DIR [N]
"""
import json
import os
import resource
import subprocess
import sys
import time


def main():
    d = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    path = os.path.join(d, "fsync-probe.%d" % os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    line = b"x" * 299 + b"\n"
    samples = []
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        for _ in range(n):
            os.write(fd, line)
            t = time.perf_counter()
            os.fdatasync(fd)
            samples.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    # CPU the calling process spends per durable append (write + fdatasync), mostly in the
    # kernel: a durable gateway spends this twice per request when its batches hold one record.
    cpu_us = ((cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)) / n * 1e6
    samples.sort()

    def pct(p):
        return samples[min(len(samples) - 1, int(len(samples) * p))] * 1e3

    try:
        df = subprocess.run(["df", "-PT", d], capture_output=True, text=True).stdout.splitlines()[-1].split()
        device, fstype = df[0], df[1]
    except Exception:  # noqa: BLE001 - informational only
        device, fstype = "?", "?"
    print(json.dumps({
        "dir": d, "device": device, "fstype": fstype, "n": n,
        "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99),
        "mean_ms": sum(samples) / len(samples) * 1e3, "max_ms": samples[-1] * 1e3,
        "cpu_us_per_sync": cpu_us,
    }))


if __name__ == "__main__":
    main()
