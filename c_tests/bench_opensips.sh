#!/usr/bin/env bash
# Opt-in end-to-end bench in a real OpenSIPS: SIPp sends OPTIONS to one UDP worker, whose
# script does rest_get to nginx (blocking, then async) and replies 200; prints calls/s for
# this module and, when C_MODULE_DIR names a directory holding the C rest_client.so, for the C
# module too, in the same run.
#
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   C_MODULE_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules SIPP=sipp c_tests/bench_opensips.sh
#
# MODULES_DIR holds proto_udp, tm and sl; the module under test is built here with
# OPENSIPS_BIN (cargo build --release). CALLS (default 20000) calls per run, CONCURRENT
# (default 20) calls in flight in SIPp (with a blocking worker, many more overflow its UDP
# receive buffer and SIPp's retransmissions then dominate the result).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OPENSIPS_BIN:?set OPENSIPS_BIN to the opensips binary}"
: "${MODULES_DIR:?set MODULES_DIR to its modules directory}"
SIPP=${SIPP:-sipp}
CALLS=${CALLS:-20000}
CONCURRENT=${CONCURRENT:-20}
command -v "$SIPP" >/dev/null || { echo "SIPp not found: set SIPP"; exit 2; }
command -v nginx >/dev/null || { echo "nginx not found: .ci/install-deps bench"; exit 2; }

OPENSIPS_BIN=$OPENSIPS_BIN cargo build --release --quiet
work=$(mktemp -d /tmp/rest_client_e2e.XXXXXX)
# Every process started here (nginx, opensips) has $work in its command line.
cleanup() { pkill -f "$work/" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

http_port=$(free_port)
sip_port=$(free_port)
cat > "$work/nginx.conf" <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$http_port; location / { return 200 "hello from nginx\n"; } }
}
EOF
nginx -p "$work" -c "$work/nginx.conf"

cat > "$work/options.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS answered after a REST lookup">
  <send>
    <![CDATA[
      OPTIONS sip:bench@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
      To: <sip:bench@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
EOF

# run MODULE_PATH MODE: prints calls/s
run() {
  local module=$1 mode=$2 call
  if [ "$mode" = blocking ]; then
    call="rest_get(\"http://127.0.0.1:$http_port/\", \$var(body), , \$var(code)); sl_send_reply(200, \"OK\");"
  else
    call="async(rest_get(\"http://127.0.0.1:$http_port/\", \$var(body), , \$var(code)), reply);"
  fi
  cat > "$work/opensips.cfg" <<EOF
log_level=1
stderror_enabled=yes
syslog_enabled=no
udp_workers=1
socket=udp:127.0.0.1:$sip_port
mpath="$MODULES_DIR/"
loadmodule "proto_udp.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "$module"
modparam("rest_client", "max_async_transfers", 1000)
route { $call }
route[reply] { t_reply(200, "OK"); }
EOF
  "$OPENSIPS_BIN" -F -m 512 -f "$work/opensips.cfg" > "$work/opensips.log" 2>&1 &
  local pid=$!
  sleep 2
  local start end ok
  start=$(date +%s.%N)
  "$SIPP" -sf "$work/options.xml" "127.0.0.1:$sip_port" -m "$CALLS" -l "$CONCURRENT" -r 100000 \
    -timeout 120 -nostdin -trace_stat -stf "$work/stat.csv" > /dev/null 2>&1 || true
  end=$(date +%s.%N)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  ok=$(tail -1 "$work/stat.csv" | awk -F';' '{print $16}')
  python3 -c "print(f'{$ok / ($end - $start):.0f} calls/s ({$ok} of $CALLS answered)')"
}

echo "OpenSIPS $("$OPENSIPS_BIN" -V | head -1 | sed 's/version: //'), 1 UDP worker, $CALLS OPTIONS, $CONCURRENT in flight"
for mode in blocking async; do
  printf '%-9s this module: %s\n' "$mode" "$(run "$PWD/target/release/librest_client.so" $mode)"
  if [ -n "${C_MODULE_DIR:-}" ]; then
    printf '%-9s C module:    %s\n' "$mode" "$(run "$C_MODULE_DIR/rest_client.so" $mode)"
  fi
done
