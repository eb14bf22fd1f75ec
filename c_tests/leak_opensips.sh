#!/usr/bin/env bash
# Opt-in memory run of async calls in a real OpenSIPS (issue 17, item 3): SIPp sends CALLS
# OPTIONS (default 100000) to one UDP worker, in rounds of SAMPLE calls (default 10000), and
# after each round, once the worker is idle and tm has freed the round's transactions, the
# worker's pkg memory (MI get_statistics pkmem:<id>-used_size and -real_used_size), its system
# memory (VmRSS of /proc/<pid>/status, split into RssAnon, the process's own pages, where this
# module's allocations and libcurl's live, and RssShmem, the pages of OpenSIPS's shared memory
# it has touched: they stay in its RSS once touched, so RssShmem follows the peak of shared
# memory in use) and OpenSIPS's shared memory (shmem:used_size and max_used_size) are printed
# as a table row, with the module's counters of what the calls did.
#
# Each call is of one kind of KINDS (default "inline transfer"), call n of kind n mod the count:
# - inline: async(rest_get) to a named service with cache_ttl, answered from the cache: the
#   module completes the call at once and tm runs the resume route inline;
# - transfer: async(rest_get) to the test server's /delay?ms=DELAY_MS (default 5): the call
#   suspends, and past max_async_transfers (MAX_ASYNC, default 4; CONCURRENT calls in flight in
#   SIPp, default 40) it runs as a blocking fallback;
# - chained (the pattern of OpenSIPS issue #3914, a tm leak of header lumps fixed upstream
#   after 3.6.8 and 4.0.1): a header appended, a transfer that suspends, then in its resume
#   route another header appended and an inline async cache hit (tm then replaces the lumps of
#   the transaction's copy of the request).
#
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   [KINDS="inline transfer chained"] c_tests/leak_opensips.sh
#
# MODULES_DIR holds tm, sl, sipmsgops and mi_fifo; the module is built here with OPENSIPS_BIN.
# A call whose resume route sees an error answers 500 (SIPp counts it as failed).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester"; exit 2; }
CALLS=${CALLS:-100000}
SAMPLE=${SAMPLE:-10000}
KINDS=${KINDS:-inline transfer}
DELAY_MS=${DELAY_MS:-5}
MAX_ASYNC=${MAX_ASYNC:-4}
CONCURRENT=${CONCURRENT:-40}
run_name=leak
. c_tests/opensips_run.sh
http_port=$(free_port)
sip_port=$(free_port)
start_test_server "$http_port"
module_dir mods "$ours_so" tm sl sipmsgops mi_fifo

# route[kind_N] for the N-th kind of KINDS; the request route picks one by the SIPp call number
# (the Call-ID's first field).
kinds=($KINDS)
kind_routes="" dispatch="" n=0
for kind in "${kinds[@]}"; do
	case $kind in
		inline) body='async(rest_get("cached://echo", $var(body), , $var(code)), done);' ;;
		transfer) body="async(rest_get(\"http://127.0.0.1:$http_port/delay?ms=$DELAY_MS\", \$var(body), , \$var(code)), done);" ;;
		chained) body="append_hf(\"X-Before: 1\\r\\n\"); async(rest_get(\"http://127.0.0.1:$http_port/delay?ms=$DELAY_MS\", \$var(body), , \$var(code)), chained);" ;;
		*) echo "unknown kind $kind (inline, transfer, chained)"; exit 2 ;;
	esac
	kind_routes+="route[kind_$n] { $body }"$'\n'
	dispatch+="if (\$var(n) == $n) route(kind_$n);"$'\n'
	n=$((n + 1))
done
{ cfg_head 1 1 "$sip_port" mods; cat <<EOF; } > "$work/opensips.cfg"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "sipmsgops.so"
loadmodule "mi_fifo.so"
loadmodule "rest_client.so"
modparam("mi_fifo", "fifo_name", "$work/fifo")
modparam("mi_fifo", "reply_dir", "$work/")
modparam("rest_client", "curl_timeout", 5)
modparam("rest_client", "max_async_transfers", $MAX_ASYNC)
modparam("rest_client", "service", "name=cached; url=http://127.0.0.1:$http_port/; cache_ttl=3600")
route {
	\$var(n) = \$(ci{s.select,0,-}{s.int}) % ${#kinds[@]};
	$dispatch}
$kind_routes
route[chained] {
	if (\$rc < 0 || \$var(code) != 200) { route(failed); exit; }
	append_hf("X-Chained: 1\r\n");
	async(rest_get("cached://echo", \$var(body), , \$var(code)), done);
}
route[done] {
	if (\$rc < 0 || \$var(code) != 200) { route(failed); exit; }
	t_reply(200, "OK");
}
route[failed] {
	xlog("L_ERR", "REST call failed: \$rc, status \$var(code)\n");
	t_reply(500, "REST call failed");
}
EOF
"$OPENSIPS_BIN" -F -m 512 -f "$work/opensips.cfg" > "$work/opensips.log" 2>&1 &
pids+=($!)
wait_udp "$sip_port"
for _ in $(seq 50); do [ -p "$work/fifo" ] && break; sleep 0.1; done

# sample CALLS ANSWERED: one table row, from MI through mi_fifo and /proc.
cat > "$work/sample.py" <<'EOF'
import json, os, sys
work, calls, answered = sys.argv[1], sys.argv[2], sys.argv[3]
reply = os.path.join(work, "sample_reply")
def mi(method, params=None):
    if not os.path.exists(reply):
        os.mkfifo(reply)
    request = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params:
        request["params"] = params
    with open(os.path.join(work, "fifo"), "w") as fifo:
        fifo.write(":sample_reply:" + json.dumps(request) + "\n")
    with open(reply) as answer:
        return json.load(answer)["result"]
worker = next(p for p in mi("ps")["Processes"] if p["Type"].startswith("SIP receiver udp"))
stats = mi("get_statistics", {"statistics": ["pkmem:", "shmem:", "rest_client:"]})
status = dict(l.split()[:2] for l in open(f"/proc/{worker['PID']}/status") if l.startswith(("VmRSS", "RssAnon", "RssShmem")))
pkg = lambda name: stats[f"pkmem:{worker['ID']}-{name}"]
rest = lambda name: stats[f"rest_client:{name}"]
print(f"| {calls} | {answered} | {pkg('used_size')} | {pkg('real_used_size')} | "
      f"{status['VmRSS:']} | {status['RssAnon:']} | {status['RssShmem:']} | "
      f"{stats['shmem:used_size']} | {stats['shmem:max_used_size']} | {rest('requests')} | {rest('cache_hits')} | "
      f"{rest('async_fallbacks')} |", flush=True)
EOF
# A pkg statistic is what the process reported at the last read (at most every 2 s): read it
# once to have it report, then again.
sample() {
	sleep 6 # tm frees a transaction 5 s after its final reply
	python3 "$work/sample.py" "$work" "$1" "$2" >/dev/null
	sleep 1
	python3 "$work/sample.py" "$work" "$1" "$2"
}

echo "$("$OPENSIPS_BIN" -V | head -1 | sed 's/version: opensips /OpenSIPS /'), 1 UDP worker; kinds: $KINDS;" \
	"transfers ${DELAY_MS} ms, max_async_transfers $MAX_ASYNC, $CONCURRENT calls in flight"
echo "| calls | answered 200 | worker pkg used (B) | worker pkg real used (B) | worker VmRSS (kB) | worker RssAnon (kB) | worker RssShmem (kB) | shm used (B) | shm peak used (B) | HTTP requests | cache hits | blocking fallbacks |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
sample 0 0
done_calls=0 answered=0
while [ "$done_calls" -lt "$CALLS" ]; do
	sipp -sf c_tests/sipp_options.xml -s leak "127.0.0.1:$sip_port" -m "$SAMPLE" -l "$CONCURRENT" \
		-r 100000 -timeout 600 -nostdin -p "$(free_port)" -trace_stat -stf "$work/stat.csv" \
		>/dev/null 2>&1 || true
	done_calls=$((done_calls + SAMPLE))
	answered=$((answered + $(tail -1 "$work/stat.csv" | awk -F';' '{print $16}')))
	sample "$done_calls" "$answered"
done
grep -c "REST call failed" "$work/opensips.log" | sed 's/^/REST calls failed: /' || true
