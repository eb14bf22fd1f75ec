#!/usr/bin/env bash
# Opt-in end-to-end check, in a real OpenSIPS, of the routes that run before their call's start
# returns (issue 17 items 1 and 8), with SIPp against c_tests/http_test_server.py:
#   item 1: async(rest_get("svc://...")) answered from the cache (after a first real transfer),
#           whose resume route, run by tm before async() returns, does
#           launch(rest_post(...), report): the job is the core's, its report route runs and the
#           worker lives (a job taken for tm's was resumed through tm: a segfault).
#   item 8: an ACK's async(rest_get(...)), whose resume route reads nothing, leaves no response
#           head to the next message; a launch() answered from the cache leaves its head to its
#           report route (the core's dummy message), not to the launching message or the next.
#
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   [REST_CLIENT_MODULE=path/to/rest_client.so] c_tests/inline_routes_opensips.sh
#
# MODULES_DIR holds tm and sl. The module is built here with OPENSIPS_BIN, unless
# REST_CLIENT_MODULE names one. Prints the script's log lines; exits 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OPENSIPS_BIN:?set OPENSIPS_BIN to the opensips binary}"
: "${MODULES_DIR:?set MODULES_DIR to its modules directory}"
command -v sipp >/dev/null || { echo "SKIP: sipp is not installed"; exit 0; }

module=${REST_CLIENT_MODULE:-}
if [ -z "$module" ]; then
	OPENSIPS_BIN=$OPENSIPS_BIN cargo build --release --quiet
	module=$(realpath "${CARGO_TARGET_DIR:-target}")/release/librest_client.so
fi
work=$(mktemp -d /tmp/rest_client_inline.XXXXXX)
pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir "$work/mods"
for m in tm sl; do ln -s "$MODULES_DIR/$m.so" "$work/mods/$m.so"; done
ln -s "$(realpath "$module")" "$work/mods/rest_client.so"
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
sip_port=$(free_port)
backend=http://127.0.0.1:$http_port

cat > "$work/opensips.cfg" <<EOF
mpath="$work/mods/"
socket=udp:127.0.0.1:$sip_port
udp_workers=1
log_level=3
stderror_enabled=yes
syslog_enabled=no
loadmodule "proto_udp.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rest_client.so"
modparam("rest_client", "service", "name=svc; url=$backend/; cache_ttl=60")
route {
	if (rest_response_header("X-Id", \$var(h)))
		xlog("L_NOTICE", "CHECK \$rm \$rU reads a response head: X-Id=\$var(h)\n");
	else
		xlog("L_NOTICE", "CHECK \$rm \$rU reads no response head\n");
	if (\$rm == "ACK") {
		async(rest_get("$backend/headers?h=X-Id:ack", \$var(b)), quiet);
		exit;
	}
	if (\$rU == "item1") {
		async(rest_get("svc://echo?x=cached", \$var(b), , \$var(code)), audit);
		exit;
	}
	rest_get("svc://headers?h=X-Id:reported", \$var(b));
	launch(rest_get("svc://headers?h=X-Id:reported", \$var(b)), report);
	if (rest_response_header("X-Id", \$var(h)))
		xlog("L_NOTICE", "CHECK after launch: X-Id=\$var(h)\n");
	else
		xlog("L_NOTICE", "CHECK after launch: no response head\n");
	rest_get("svc://headers?h=X-Id:unreported", \$var(b));
	launch(rest_get("svc://headers?h=X-Id:unreported", \$var(b)));
	sl_send_reply(200, "OK");
}
route[audit] {
	xlog("L_NOTICE", "CHECK resume route rc=\$rc code=\$var(code)\n");
	launch(rest_post("$backend/delay?ms=100", "audit", "text/plain", \$var(ab)), audited);
	t_reply(200, "OK");
}
route[audited] {
	xlog("L_NOTICE", "CHECK audit report route rc=\$rc body=\$var(ab)\n");
}
route[quiet] {
	xlog("L_NOTICE", "CHECK ACK resume route rc=\$rc\n");
}
route[report] {
	if (rest_response_header("X-Id", \$var(h)))
		xlog("L_NOTICE", "CHECK report route reads X-Id=\$var(h)\n");
	else
		xlog("L_NOTICE", "CHECK report route reads no response head\n");
}
EOF

# One request of the scenario's method to sip:<service>; an answer is awaited but for an ACK.
scenario() { # file method
	local answer='<recv response="200" timeout="6000"/>' to_tag=''
	[ "$2" = ACK ] && answer='<pause milliseconds="300"/>' && to_tag=';tag=x'
	cat > "$1" <<EOF
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="one $2">
  <send>
    <![CDATA[
      $2 sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>$to_tag
      Call-ID: [call_id]
      CSeq: 1 $2
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  $answer
</scenario>
EOF
}
scenario "$work/options.xml" OPTIONS
scenario "$work/ack.xml" ACK

python3 c_tests/http_test_server.py --port "$http_port" --max-seconds 120 \
	</dev/zero >"$work/server.log" 2>&1 &
pids+=($!)
"$OPENSIPS_BIN" -F -f "$work/opensips.cfg" >"$work/opensips.log" 2>&1 &
opensips_pid=$!
pids+=($opensips_pid)
sleep 3
send() { # scenario service
	sipp -sf "$work/$1.xml" -s "$2" -m 1 -i 127.0.0.1 -p "$(free_port)" -timeout 10 \
		-timeout_error "127.0.0.1:$sip_port" >/dev/null 2>&1 || echo "$1 $2: no 200"
}
send ack item8
send options item8
send options item8
for i in 1 2 3; do send options item1; done
sleep 1

log=$work/opensips.log
grep -E 'CHECK|segfault|signal 11' "$log" || true
failed=0
count() { grep -c -F "$1" "$log" || true; }
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; failed=1; fi; }
check "the worker lives" "kill -0 $opensips_pid 2>/dev/null && [ $(count segfault) -eq 0 ]"
check "item 1: three resume routes, each launch's report route ran" \
	"[ $(count 'CHECK resume route rc=1 code=200') -eq 3 ] && [ $(count 'CHECK audit report route rc=1 body=delayed') -eq 3 ]"
check "item 8: no message reads another's response head" \
	"[ $(count 'reads a response head') -eq 0 ] && [ $(count 'CHECK after launch: no response head') -eq 2 ]"
check "item 8: a launch's report route reads its job's response head" \
	"[ $(count 'CHECK report route reads X-Id=reported') -eq 2 ]"
exit $failed
