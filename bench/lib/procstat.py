#!/usr/bin/env python3
"""CPU and memory of a group of processes (a gateway: master + workers), as one JSON object.

ticks: utime + stime of each process (all its threads), summed, in clock ticks;
rss_kb / pss_kb: from /proc/<pid>/smaps_rollup, summed (PSS shares pages fairly, so the
sum over master + workers counts shared pages once); hwm_kb: VmHWM (peak RSS) summed;
fds: open file descriptors, summed.

usage: procstat.py PID...
"""
import json
import os
import sys


def one(pid):
    with open("/proc/%s/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    ticks = int(fields[11]) + int(fields[12])
    rss = pss = 0
    with open("/proc/%s/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    hwm = vmrss = 0
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                vmrss = int(line.split()[1])
    fds = len(os.listdir("/proc/%s/fd" % pid))
    return {"pid": int(pid), "ticks": ticks, "rss_kb": rss, "pss_kb": pss,
            "vmrss_kb": vmrss, "hwm_kb": hwm, "fds": fds}


def main():
    procs = [one(p) for p in sys.argv[1:]]
    out = {"clk_tck": os.sysconf("SC_CLK_TCK"), "procs": procs}
    for k in ("ticks", "rss_kb", "pss_kb", "vmrss_kb", "hwm_kb", "fds"):
        out[k] = sum(p[k] for p in procs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
