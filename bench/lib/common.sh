# shellcheck shell=bash
# Shared helpers of bench/run and bench/soak (sourced, not run).
# Expects BENCH (the bench/ directory) and REPO (the repository root) to be set.

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- processes we start: every one is stopped on exit -----------------------------------
STARTED_PIDS=()

# start_bg NAME OUTFILE ERRFILE CMD...: runs CMD in the background, remembers its pid in
# $LAST_PID and in STARTED_PIDS.
start_bg() {
    local name=$1 out=$2 err=$3
    shift 3
    "$@" >"$out" 2>"$err" </dev/null &
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
    log "started $name (pid $LAST_PID)"
}

# Stops every process started with start_bg (children too: nginx/HAProxy masters take their
# workers down), newest first: TERM, then KILL after a grace period.
stop_all() {
    local i pid kids
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${STARTED_PIDS[i]}
        kill -0 "$pid" 2>/dev/null || continue
        kids=$(pgrep -P "$pid" 2>/dev/null | tr '\n' ' ' || true)
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid did not stop on TERM: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        for k in $kids; do
            if kill -0 "$k" 2>/dev/null; then kill -KILL "$k" 2>/dev/null || true; fi
        done
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}

# --- tools -------------------------------------------------------------------------------
# Installs the Debian packages named (when their command is missing) and oha into
# bench/.tools (cargo install, once). Sets OHA.
ensure_tools() {
    local want=() pkg cmd
    for pair in "$@"; do
        pkg=${pair%%:*}
        cmd=${pair#*:}
        if [[ $cmd == /* ]]; then
            [[ -e $cmd ]] || want+=("$pkg")
        else
            command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
        fi
    done
    if ((${#want[@]})); then
        log "installing Debian packages: ${want[*]}"
        local sudo=
        [[ $(id -u) == 0 ]] || sudo=sudo
        $sudo apt-get update -qq
        # policy-rc.d / no systemd in containers: the packaged services are not started;
        # on a full system stop them (bench/run starts its own instances on other ports).
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${want[@]}" >&2
    fi
    OHA=${OHA:-$BENCH/.tools/bin/oha}
    if [[ ! -x $OHA ]]; then
        log "installing oha into bench/.tools (cargo install, takes a few minutes, once)"
        cargo install oha --locked --root "$BENCH/.tools" >&2
    fi
}

# Builds the release binaries (default target dir unless CARGO_TARGET_DIR is set). Sets BIN
# and TARGET_DIR.
build_release() {
    local target=${CARGO_TARGET_DIR:-$REPO/target}
    [[ $target == /* ]] || target=$REPO/$target
    if [[ ${SKIP_BUILD:-0} != 1 ]]; then
        log "cargo build --release --bins (target dir $target)"
        (cd "$REPO" && cargo build --release --bins >&2)
    fi
    BIN=$target/release
    [[ -x $BIN/meetgate && -x $BIN/meeting-sim ]] || die "no release binaries in $BIN"
    export TARGET_DIR=$target
}

# The audit log's files, oldest first: rotated ones (audit.jsonl.<20-digit seq>), then the
# active one. Prints names relative to DIR.
audit_files() {
    local f
    for f in "$1"/audit.jsonl.[0-9]*; do
        [[ -e $f && ${f##*.} =~ ^[0-9]+$ ]] && basename "$f"
    done
    echo audit.jsonl
}

# --- ports -------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_http URL [SECS] [CURL_ARGS...]: waits until URL answers (any HTTP status).
wait_http() {
    local url=$1 secs=${2:-20}
    shift 2 || true
    local deadline=$((SECONDS + secs))
    until curl -s -o /dev/null "$@" "$url"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# wait_ok URL [SECS]: waits until URL answers 200.
wait_ok() {
    local url=$1 secs=${2:-20} deadline
    deadline=$((SECONDS + secs))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# --- the simulator -------------------------------------------------------------------------
# start_sim DIR EXTRA_ARGS...: starts meeting-sim on a free port; sets SIM_PORT, SIM_PID,
# SIM_CA, SIM_URL. Set SIM_TASKSET (e.g. "taskset -c 1") to pin it, SIM_TOKEN_LIFETIME
# (default 86400 s) for the control-token lifetime.
start_sim() {
    local dir=$1
    shift
    SIM_PORT=$(free_port)
    SIM_CA=$dir/sim-ca.pem
    # shellcheck disable=SC2086
    start_bg meeting-sim "$dir/sim.out" "$dir/sim.err" ${SIM_TASKSET:-} "$BIN/meeting-sim" \
        --listen "127.0.0.1:$SIM_PORT" --ca-out "$SIM_CA" --token-lifetime-secs "${SIM_TOKEN_LIFETIME:-86400}" "$@"
    SIM_PID=$LAST_PID
    local deadline=$((SECONDS + 20))
    until grep -q '^MEETING_SIM_BASE_URL=' "$dir/sim.out" 2>/dev/null && [[ -s $SIM_CA ]]; do
        kill -0 "$SIM_PID" 2>/dev/null || die "meeting-sim exited: $(cat "$dir/sim.err")"
        ((SECONDS < deadline)) || die "meeting-sim did not start"
        sleep 0.1
    done
    SIM_URL=$(sed -n 's/^MEETING_SIM_BASE_URL=//p' "$dir/sim.out")
    wait_http "$SIM_URL/_sim/stats" 20 --cacert "$SIM_CA" || die "meeting-sim does not answer"
}

# A control token for the demo conference, for peers that inject a static header.
fetch_token() {
    curl -sf --cacert "$SIM_CA" -H 'X-Password: 738291' -H 'X-Login-Type: 1' \
        "$SIM_URL/v1/mmc/control/conferences/token?conferenceID=914083136" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])'
}

# Refuses a tmpfs for the durable-audit directory (fdatasync on tmpfs is free and the
# comparison would be meaningless).
check_real_disk() {
    local fstype
    fstype=$(stat -f -c %T "$1")
    case $fstype in
    tmpfs | ramfs) die "$1 is on $fstype: put it on a real disk (set AUDIT_DIR)" ;;
    esac
    log "audit directory $1 is on $fstype ($(df -P "$1" | awk 'NR==2 {print $1}'))"
}

# One line on the machine's load, for the results.
load_note() {
    # CPU use over the last half second (top's second frame), not ps's lifetime average.
    printf 'loadavg %s; busiest processes now: %s' "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(top -b -n 2 -d 0.5 -w 200 2>/dev/null | awk '/^top -/ {f++} f == 2 && $1 ~ /^[0-9]+$/ && n < 5 {printf "%s %s%%; ", $12, $9; n++}')"
}

# fill TEMPLATE OUT KEY=VALUE...: replaces @KEY@ by VALUE.
fill() {
    local tpl=$1 out=$2
    shift 2
    python3 - "$tpl" "$out" "$@" <<'PY'
import sys
tpl, out, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
s = open(tpl).read()
for p in pairs:
    k, v = p.split("=", 1)
    s = s.replace("@%s@" % k, v)
import re
left = re.findall(r"@[A-Z_]+@", s)
if left:
    sys.exit("unfilled placeholders in %s: %s" % (tpl, sorted(set(left))))
open(out, "w").write(s)
PY
}
