#!/usr/bin/env bash
# Opt-in end-to-end check of HEP tracing in a real OpenSIPS (issue 11): tracer + proto_hep send
# to a UDP port that tshark captures; SIPp sends OPTIONS whose script calls trace("tid", "t",
# "sip|rest") and then a blocking rest_get (credentials in the URL and an X-Api-Key header), an
# async rest_post, a rest_get to a closed port and an async rest_request to a bearer-token
# service. The capture is decoded with c_tests/hep3.lua (Debian 12's tshark has no HEP
# dissector) and checked: REST packets correlated with each SIP Call-ID, no secret anywhere.
# With C_MODULE_DIR (a directory holding the C rest_client.so), the C module runs the same
# script (but the service call) in the same capture, and its REST packets are counted.
#
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   [C_MODULE_DIR=...] c_tests/hep_opensips.sh
#
# MODULES_DIR holds tm, sl, tracer and proto_hep. Skips (exit 0) without tshark or SIPp.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in tshark sipp; do
	command -v $tool >/dev/null || { echo "SKIP: $tool is not installed"; exit 0; }
done
run_name=hep
. c_tests/opensips_run.sh
http_port=$(free_port)
hep_port=$(free_port)

# One OpenSIPS per module: its own module directory, SIP port and HEP source port.
instance() { # name module.so
	local name=$1 so=$2 sip_port hep_src
	sip_port=$(free_port)
	hep_src=$(free_port)
	module_dir "$name" "$so" tm sl tracer proto_hep
	local ours='#'
	[ "$name" = ours ] && ours=''
	{ cfg_head 3 1 "$sip_port" "$name"; cat <<EOF; } > "$work/$name.cfg"
socket=hep_udp:127.0.0.1:$hep_src
loadmodule "proto_hep.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "tracer.so"
loadmodule "rest_client.so"
modparam("proto_hep", "hep_id", "[hid]127.0.0.1:$hep_port; transport=udp; version=3")
modparam("proto_hep", "homer5_on", 0)
modparam("tracer", "trace_id", "[tid]uri=hep:hid")
modparam("rest_client", "curl_timeout", 2)
modparam("rest_client", "connection_timeout", 2)
${ours}modparam("rest_client", "service", "name=api; url=http://127.0.0.1:$http_port/; auth=bearer:sekret-token")
route {
	trace("tid", "t", "sip|rest");
	if (\$rU == "get") {
		t_newtran();
		rest_append_hf("X-Api-Key: sekret-key");
		rest_get("http://bob:hunter2@127.0.0.1:$http_port/echo?user=\$fU", \$var(body), , \$var(code));
		t_reply(200, "get \$rc");
		exit;
	}
	if (\$rU == "post")
		async(rest_post("http://127.0.0.1:$http_port/echo", "{\"a\":1}", "application/json", \$var(body)), done);
	if (\$rU == "refused") {
		t_newtran();
		rest_get("http://127.0.0.1:1/x", \$var(body));
		t_reply(200, "refused \$rc");
		exit;
	}
${ours}	if (\$rU == "svc")
${ours}		async(rest_request("DELETE", "api://echo", , , \$var(body)), done);
	sl_send_reply(404, "unknown");
}
route[done] {
	t_reply(200, "async \$rc");
}
EOF
	"$OPENSIPS_BIN" -F -f "$work/$name.cfg" >"$work/$name.log" 2>&1 &
	pids+=($!)
	echo "$sip_port" > "$work/$name.port"
}

tshark -q -i lo -f "udp port $hep_port" -w "$work/hep.pcap" >/dev/null 2>"$work/tshark.log" &
tshark_pid=$!
pids+=($tshark_pid)
start_test_server "$http_port"
instance ours "$ours_so"
[ -n "${C_MODULE_DIR:-}" ] && instance c "$C_MODULE_DIR/rest_client.so"
sleep 3
for name in ours c; do
	[ -f "$work/$name.port" ] || continue
	for service in get post refused svc; do
		[ "$name/$service" = c/svc ] && continue
		sipp -sf c_tests/sipp_options.xml -s $service -m 1 -i 127.0.0.1 -p "$(free_port)" \
			-timeout 10 -timeout_error \
			"127.0.0.1:$(cat "$work/$name.port")" >/dev/null 2>&1 || echo "$name $service: no 200"
	done
done
sleep 1
kill -INT "$tshark_pid"
wait "$tshark_pid" || true

decoded=$work/decoded.txt
tshark -X lua_script:c_tests/hep3.lua -d "udp.port==$hep_port,hep3" -r "$work/hep.pcap" \
	-T fields -E separator='|' -e hep3.proto_type -e hep3.src -e hep3.dst \
	-e hep3.correlation_id -e hep3.extra_correlation -e hep3.payload 2>/dev/null > "$decoded"
cat "$decoded"
failed=0
rest_packets() { # call-id: REST packets whose extra correlation names this SIP Call-ID
	grep '^0x58|' "$decoded" | cut -d'|' -f5 | grep -c -F "\"$1\"" || true
}
check() { if eval "$2"; then echo "ok: $1"; else echo "FAIL: $1"; failed=1; fi; }
ours_port=$(cat "$work/ours.port")
ours_calls=$(grep "^0x01|127.0.0.1:[0-9]*|127.0.0.1:$ours_port|" "$decoded" | cut -d'|' -f4 | sort -u)
for call in $ours_calls; do
	check "REST request and reply for Call-ID $call" "[ $(rest_packets "$call") -ge 2 ]"
done
check "no secret in the capture" "! grep -q -E 'sekret|hunter2|Ym9iOmh1bnRlcjI' '$decoded'"
check "the connect refused carries its reason" "grep -q 'connect refused for http://127.0.0.1:1/x' '$decoded'"
if [ -f "$work/c.port" ]; then
	c_port=$(cat "$work/c.port")
	c_calls=$(grep "^0x01|127.0.0.1:[0-9]*|127.0.0.1:$c_port|" "$decoded" | cut -d'|' -f4 | sort -u)
	c_rest=0
	for call in $c_calls; do
		c_rest=$((c_rest + $(rest_packets "$call")))
	done
	echo "C module: $(echo $c_calls | wc -w) traced SIP calls, $c_rest REST packets"
fi
exit $failed
