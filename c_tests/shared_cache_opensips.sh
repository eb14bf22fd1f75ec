#!/usr/bin/env bash
# Opt-in end-to-end run of the shared response cache (issue 12) in real OpenSIPS instances
# with a real redis-server and OpenSIPS's cachedb_redis, against c_tests/http_test_server.py
# (whose /stats counts the requests it served).
#
#   demo:  two instances (2 UDP workers each) share service lcr through redis: one answer for
#          both, a PATCH through one invalidates for both, redis killed and restarted mid-run
#          without a failed call, a flush through one reaches the other.
#   bench: backend requests for CALLS SIP calls (default 10000) over KEYS hot keys (default
#          100, cache_ttl 300 s) with 1, 2 and 4 workers and with 2 instances, per-process
#          cache only versus shared through redis (and cachedb_local for one instance);
#          ROWS (a regular expression, e.g. "redis 2x2") picks rows.
#   stall: one instance (WORKERS UDP workers, default 2) answering each OPTIONS after an
#          async rest_get of one of KEYS hot keys through redis, SIPp sending RATE calls/s
#          (default 1000) for DURATION seconds (default 30); redis is SIGSTOPped for 10 s from the 10th
#          second. Prints the SIP reply times (p50, p99, max; overall and for the calls sent
#          while redis was stopped) and the calls lost (not answered 200). cachedb_redis's
#          connect_timeout and query_timeout are REDIS_TIMEOUT_MS (default 2; "default" leaves
#          them at cachedb_redis's 5000).
#
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   c_tests/shared_cache_opensips.sh demo|bench|stall
#
# MODULES_DIR holds tm, sl, cachedb_local and cachedb_redis (and proto_udp where UDP is not
# built in); the module is built here with OPENSIPS_BIN, or taken from MODULE_SO (another
# build of it, e.g. an older commit's, to compare). KEEP=1 keeps the work directory (logs,
# SIPp's files). Each instance gets 1 GB of shared memory (-m 1024: tm's transactions at
# 1000 calls/s outgrow the default 32 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: $0 demo|bench|stall}
: "${OPENSIPS_BIN:?set OPENSIPS_BIN to the opensips binary}"
: "${MODULES_DIR:?set MODULES_DIR to its modules directory}"
CALLS=${CALLS:-10000}
KEYS=${KEYS:-100}
RATE=${RATE:-1000}
DURATION=${DURATION:-30}
WORKERS=${WORKERS:-2}
REDIS_TIMEOUT_MS=${REDIS_TIMEOUT_MS:-2}
for tool in sipp redis-server redis-cli; do
    command -v $tool >/dev/null || { echo "$tool not found"; exit 2; }
done

if [ -z "${MODULE_SO:-}" ]; then
    OPENSIPS_BIN=$OPENSIPS_BIN cargo build --release --quiet
    MODULE_SO=target/release/librest_client.so
fi
work=$(mktemp -d /tmp/rest_client_cache.XXXXXX)
mkdir "$work/mods"
for m in "$MODULES_DIR"/*.so; do ln -s "$m" "$work/mods/"; done
cp "$MODULE_SO" "$work/mods/rest_client.so"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

backend=$(free_port)
tail -f /dev/null | python3 c_tests/http_test_server.py --port "$backend" --max-seconds 3600 \
    > "$work/backend.log" 2>&1 &
pids+=($!)
redis_port=$(free_port)
start_redis() {
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
        > "$work/redis.log" 2>&1 &
    redis_pid=$!
    pids+=($redis_pid)
    for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return; sleep 0.1; done
}
start_redis
stats() { curl -s "http://127.0.0.1:$backend/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])'; }
reset_stats() { curl -s "http://127.0.0.1:$backend/stats/reset" >/dev/null; }

# instance NAME SIP_PORT WORKERS CACHE_ITEM: starts an OpenSIPS, returns when it listens.
instance() {
    local get_log=""
    [ "$mode" = demo ] && get_log="xlog(\"L_NOTICE\", \"$1: get \$var(id) rc=\$var(rc) code=\$var(code) body=\$var(body)\\n\");"
    # 3.x loads UDP as a module (built in or not); 4.0 has it in the core.
    local udp=""
    if "$OPENSIPS_BIN" -V | grep -q "^version: opensips 3"; then udp='loadmodule "proto_udp.so"'; fi
    # stall: async calls, answered statefully from the resume route; redis's own limits.
    local get_call="rest_get(\"lcr://items/\$var(id)\", \$var(body), , \$var(code));"
    local redis_params=""
    if [ "$mode" = stall ]; then
        get_call="async(rest_get(\"lcr://items/\$var(id)\", \$var(body), , \$var(code)), reply);"
        if [ "$REDIS_TIMEOUT_MS" != default ]; then
            redis_params="modparam(\"cachedb_redis\", \"connect_timeout\", $REDIS_TIMEOUT_MS)
modparam(\"cachedb_redis\", \"query_timeout\", $REDIS_TIMEOUT_MS)"
        fi
    fi
    cat > "$work/$1.cfg" <<EOF
log_level=3
stderror_enabled=yes
syslog_enabled=no
udp_workers=$3
socket=udp:127.0.0.1:$2
mpath="$work/mods/"
$udp
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "cachedb_local.so"
loadmodule "cachedb_redis.so"
loadmodule "rest_client.so"
$redis_params
modparam("rest_client", "curl_timeout", 2)
modparam("rest_client", "max_async_transfers", 1000)
modparam("rest_client", "service", "name=lcr; url=http://127.0.0.1:$backend/; cache_ttl=300; cache_entries=10000$4")

route {
    \$var(rc) = -1;
    if (\$rU =~ "^get-") {
        \$var(id) = \$(rU{s.substr,4,0});
        $get_call
        \$var(rc) = \$rc;
        $get_log
    } else if (\$rU =~ "^write-") {
        \$var(id) = \$(rU{s.substr,6,0});
        rest_patch("lcr://items/\$var(id)", "{}", "application/json", \$var(body), , \$var(code));
        \$var(rc) = \$rc;
        xlog("L_NOTICE", "$1: patch \$var(id) rc=\$var(rc) code=\$var(code)\n");
    } else if (\$rU == "flush") {
        rest_cache_flush("lcr");
        \$var(rc) = \$rc;
        xlog("L_NOTICE", "$1: flush rc=\$var(rc)\n");
    }
    if (\$var(rc) == 1)
        sl_send_reply(200, "OK");
    else
        sl_send_reply(500, "rest failed");
}
route[reply] {
    if (\$rc == 1 && \$var(code) == 200)
        t_reply(200, "OK");
    else
        t_reply(500, "rest failed");
}
EOF
    "$OPENSIPS_BIN" -F -m 1024 -f "$work/$1.cfg" > "$work/$1.log" 2>&1 &
    pids+=($!)
    eval "pid_$1=$!"
    for _ in $(seq 50); do ss -lun | grep -q "127.0.0.1:$2 " && return; sleep 0.1; done
    echo "OpenSIPS $1 did not start:"; cat "$work/$1.log"; exit 1
}
stop_instances() {
    for name in "$@"; do eval "kill \$pid_$name 2>/dev/null; wait \$pid_$name 2>/dev/null || true"; done
}

# One OPTIONS to USER@PORT, answered 200 or not.
call() {
    if sipp -sf c_tests/sipp_options.xml -s "$2" "127.0.0.1:$1" -m 1 -nostdin -timeout 10s \
        -p "$(free_port)" >/dev/null 2>&1; then echo "  $2 via $1: 200"; else echo "  $2 via $1: FAILED"; fi
}

if [ "$mode" = demo ]; then
    a=$(free_port); b=$(free_port)
    instance A "$a" 2 "; cache=redis://127.0.0.1:$redis_port/"
    instance B "$b" 2 "; cache=redis://127.0.0.1:$redis_port/"
    echo "A asks, then B asks the same:"
    call "$a" get-a; echo "  backend requests: $(stats)"
    call "$b" get-a; echo "  backend requests: $(stats)"
    echo "B writes; A and B ask again:"
    call "$b" write-a; call "$a" get-a; call "$b" get-a; echo "  backend requests: $(stats)"
    echo "redis killed:"
    kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
    for _ in 1 2 3; do call "$a" get-a; call "$b" get-b; done; echo "  backend requests: $(stats)"
    echo "redis restarted:"
    start_redis
    call "$a" get-c; call "$b" get-c; echo "  backend requests: $(stats)"
    echo "flush through A, B asks:"
    call "$a" flush; call "$b" get-c; echo "  backend requests: $(stats)"
    echo "keys in redis:"; redis-cli -p "$redis_port" --scan | sort | sed 's/^/  /'
    stop_instances A B
    echo "log lines (A, B):"
    grep -hE "NOTICE:[AB]:|WARNING:rest_client|ERROR" "$work/A.log" "$work/B.log" | sort -k3,3 -s | sed 's/^/  /'
    exit 0
fi

# bench and stall: calls over KEYS keys in turn.
python3 -c "print('SEQUENTIAL'); [print(f'k{i};') for i in range($KEYS)]" > "$work/keys.csv"
sed 's/\[service\]/get-[field0]/g' c_tests/sipp_options.xml > "$work/keys.xml"

if [ "$mode" = stall ]; then
    # The same OPTIONS, timed from its first send to the 200 (SIPp's response time).
    sed -e 's/<send retrans="500">/<send retrans="500" start_rtd="1">/' \
        -e 's/<recv response="200" timeout="6000"\/>/<recv response="200" rtd="1" timeout="6000"\/>/' \
        "$work/keys.xml" > "$work/timed.xml"
    port=$(free_port)
    instance S "$port" "$WORKERS" "; cache=redis://127.0.0.1:$redis_port/"
    # Every key once, so that the run itself only reads the cache.
    sipp -sf "$work/keys.xml" -inf "$work/keys.csv" "127.0.0.1:$port" -m "$KEYS" -r 200 \
        -nostdin -timeout 60s -p "$(free_port)" >/dev/null 2>&1 || true
    reset_stats
    calls=$((RATE * DURATION))
    (cd "$work" && sipp -sf timed.xml -inf keys.csv "127.0.0.1:$port" -m "$calls" -r "$RATE" \
        -l 20000 -nostdin -timeout $((DURATION + 30))s -p "$(free_port)" \
        -trace_rtt -rtt_freq 1 -trace_stat -stf stat.csv >/dev/null 2>&1) &
    sipp_pid=$!
    start=$(date +%s.%N)
    sleep 10
    stop_at=$(date +%s.%N)
    kill -STOP "$redis_pid"
    sleep 10
    kill -CONT "$redis_pid"
    cont_at=$(date +%s.%N)
    wait "$sipp_pid" || true
    stop_instances S
    python3 - "$work" "$start" "$stop_at" "$cont_at" "$calls" "$(stats)" <<'PY'
import csv, glob, sys
work, start, stop_at, cont_at, calls, backend = sys.argv[1], *map(float, sys.argv[2:5]), int(sys.argv[5]), sys.argv[6]
# timed_<pid>_rtt.csv: Date_ms (the answer's arrival, ms since SIPp started, taken as `start`);
# response_time (whole ms); rtd_no
rows = []
for name in glob.glob(f"{work}/timed_*_rtt.csv"):
    with open(name) as f:
        for row in csv.reader(f, delimiter=";"):
            try:
                rows.append((start + float(row[0]) / 1000, float(row[1])))
            except (ValueError, IndexError):
                pass
def summary(times):
    if not times:
        return "none answered"
    times = sorted(times)
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return f"p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {times[-1]:.0f} ms ({len(times)} answered)"
sent = lambda t0, t1: [t for at, t in rows if t0 <= at - t / 1000 < t1]
print(f"all calls:             {summary([t for _, t in rows])}")
print(f"sent before the stop:  {summary(sent(start, stop_at))}")
print(f"sent while stopped:    {summary(sent(stop_at, cont_at))}")
print(f"sent after:            {summary(sent(cont_at, float('inf')))}")
print(f"calls lost (no 200):   {calls - len(rows)} of {calls}")
print(f"backend requests:      {backend}")
PY
    echo "log lines (count, text):"
    grep -hE "WARNING:rest_client|ERROR:rest_client|cachedb_redis" "$work/S.log" | sed -E 's/^.*\] //' |
        sort | uniq -c | sort -rn | head -6 | sed 's/^/  /'
    exit 0
fi

# bench: CALLS calls over KEYS keys, spread over the instances' SIP ports.
# run LABEL INSTANCES WORKERS CACHE_ITEM (only the rows "LABEL INSTANCESxWORKERS" that match
# the regular expression ROWS, if set)
run() {
    if [ -n "${ROWS:-}" ] && ! [[ "$1 $2x$3" =~ $ROWS ]]; then return; fi
    reset_stats
    redis-cli -p "$redis_port" flushall >/dev/null
    local ports=() names=()
    for i in $(seq "$2"); do
        local port; port=$(free_port)
        instance "I$i" "$port" "$3" "$4"
        ports+=("$port"); names+=("I$i")
    done
    local start; start=$(date +%s.%N)
    local sipps=()
    for port in "${ports[@]}"; do
        sipp -sf "$work/keys.xml" -inf "$work/keys.csv" "127.0.0.1:$port" -m $((CALLS / $2)) \
            -r 2000 -l 100 -nostdin -timeout 120s -p "$(free_port)" \
            -trace_stat -stf "$work/stat_$port.csv" >/dev/null 2>&1 &
        sipps+=($!)
    done
    local failed=0
    for pid in "${sipps[@]}"; do wait "$pid" || failed=1; done
    local secs; secs=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
    printf "| %s | %d | %d | %s | %s |\n" "$1" "$2" "$3" "$(stats)" \
        "$([ $failed = 0 ] && echo "all 200 ($secs s)" || echo "some failed")"
    stop_instances "${names[@]}"
    for name in "${names[@]}"; do
        grep -h "WARNING:rest_client:shared_guard" "$work/$name.log" | sed -E "s/^.*\] /  $1, $2 x $3: /" || true
    done >> "$work/warnings"
}
echo "| cache | instances | workers each | backend requests for $CALLS calls, $KEYS keys | SIP calls |"
echo "|---|---|---|---|---|"
for workers in 1 2 4; do
    run "per process" 1 $workers ""
    run "redis" 1 $workers "; cache=redis://127.0.0.1:$redis_port/"
done
run "local://" 1 4 "; cache=local://"
run "per process" 2 2 ""
run "redis" 2 2 "; cache=redis://127.0.0.1:$redis_port/"
if [ -s "$work/warnings" ]; then echo "shared cache warnings:"; cat "$work/warnings"; fi
