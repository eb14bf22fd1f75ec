#!/usr/bin/env bash
# Opt-in end-to-end check of forged answers (issue 22) in a real OpenSIPS: one UDP worker, so
# that consecutive SIP calls share that worker's kept-alive connections to
# c_tests/http_test_server.py. Per mode (blocking, async): call 1 asks /unsolicited (answered,
# then a second complete response, body "SMUGGLED", is written on the kept-alive connection),
# call 2 asks /echo: its answer must be its own (the echo JSON), never "SMUGGLED". Then a
# response with two different Content-Length values (/framing?cl=12&cl=10) and one with a
# Content-Length and Transfer-Encoding: chunked, which this module refuses with -10. Each call
# is logged as `FORGED <mode>-<case>: rc=.. code=.. body=..`, and those lines are printed.
# With C_MODULE_DIR (a directory holding the C rest_client.so), the C module runs the same
# script in the same run; its lines are printed, not checked.
#
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   [C_MODULE_DIR=...] c_tests/forged_opensips.sh
#
# MODULES_DIR holds tm and sl; the module is built here with OPENSIPS_BIN. Exit status 1 when a
# check of this module fails.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v sipp >/dev/null || { echo "sipp not found: apt-get install sip-tester"; exit 2; }
run_name=forged
. c_tests/opensips_run.sh
http_port=$(free_port)
start_test_server "$http_port"

# One OpenSIPS per module: its own module directory and SIP port.
instance() { # name module.so
	local name=$1 so=$2 sip_port
	sip_port=$(free_port)
	module_dir "$name" "$so" tm sl
	{ cfg_head 3 1 "$sip_port" "$name"; cat <<EOF; } > "$work/$name.cfg"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rest_client.so"
modparam("rest_client", "curl_timeout", 2)
route {
	# \$var persists between a worker's messages: a variable a call leaves as it was shows "-".
	\$var(body) = "-";
	\$var(code) = "-";
	\$var(path) = \$(rU{s.select,1,-});
	if (\$var(path) == "unsolicited") \$var(path) = "unsolicited?ms=50";
	else if (\$var(path) == "conflicting") \$var(path) = "framing?cl=12&cl=10";
	else if (\$var(path) == "cl_and_te") \$var(path) = "framing?cl=12&te=chunked";
	\$var(url) = "http://127.0.0.1:$http_port/" + \$var(path);
	if (\$rU =~ "^async-") {
		async(rest_get(\$var(url), \$var(body), , \$var(code)), done);
		exit;
	}
	rest_get(\$var(url), \$var(body), , \$var(code));
	\$var(rc) = \$rc;
	xlog("L_NOTICE", "FORGED \$rU: rc=\$var(rc) code=\$var(code) body=\$var(body)\n");
	sl_send_reply(200, "OK");
}
route[done] {
	\$var(rc) = \$rc;
	xlog("L_NOTICE", "FORGED \$rU: rc=\$var(rc) code=\$var(code) body=\$var(body)\n");
	t_reply(200, "OK");
}
EOF
	"$OPENSIPS_BIN" -F -f "$work/$name.cfg" >"$work/$name.log" 2>&1 &
	pids+=($!)
	wait_udp "$sip_port"
	for mode in blocking async; do
		for case in unsolicited echo conflicting cl_and_te; do
			sipp -sf c_tests/sipp_options.xml -s "$mode-$case" -m 1 -i 127.0.0.1 -p "$(free_port)" \
				-timeout 10 -timeout_error "127.0.0.1:$sip_port" >/dev/null 2>&1 ||
				echo "$name $mode-$case: no 200"
			# The unsolicited response reaches the kept-alive connection before the next call.
			sleep 0.3
		done
	done
	echo "$name:"
	grep -E "FORGED|rest_client" "$work/$name.log" | sed 's/^/  /'
}

instance ours "$ours_so"
[ -n "${C_MODULE_DIR:-}" ] && instance c "$C_MODULE_DIR/rest_client.so"

failed=0
check() { if grep -q -E "$2" "$work/ours.log"; then echo "ok: $1"; else echo "FAIL: $1"; failed=1; fi; }
for mode in blocking async; do
	check "$mode: the call after the unsolicited response gets its own answer" \
		"FORGED $mode-echo: rc=1 code=200 body=\{\"method\": \"GET\""
	check "$mode: conflicting Content-Length refused" "FORGED $mode-conflicting: rc=-10 "
	check "$mode: Content-Length with Transfer-Encoding refused" "FORGED $mode-cl_and_te: rc=-10 "
done
if grep -q "SMUGGLED" <(grep "FORGED" "$work/ours.log"); then echo "FAIL: a call read SMUGGLED"; failed=1; fi
exit $failed
