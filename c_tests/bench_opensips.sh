#!/usr/bin/env bash
# Opt-in end-to-end bench in a real OpenSIPS: SIPp sends OPTIONS to one UDP worker, whose
# script does rest_get to nginx (blocking, then async) and replies 200; prints calls/s and the
# OpenSIPS processes' CPU time per call for this module and, when C_MODULE_DIR names a directory
# holding the C rest_client.so, for the C module too, in the same run. Two baselines without
# any REST call bound what a module can reach: `sl_send_reply` alone (the blocking script's
# ceiling) and `t_newtran` + `t_reply` (the transaction work every async call carries).
#
#   .ci/install-deps bench            # nginx, SIPp (Debian package sip-tester)
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   C_MODULE_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules c_tests/bench_opensips.sh
#
# MODULES_DIR holds tm and sl; the module under test is built here with OPENSIPS_BIN (cargo
# build --release). CALLS (default 30000) calls per run, CONCURRENT (default 100) calls in flight
# in SIPp: SIPp needs about 4 ms per call of its own, so with 20 in flight every script runs at
# about 5000 calls/s and the figure measures SIPp; far more in flight overflow the blocking
# worker's UDP receive buffer and SIPp's retransmissions then dominate.
#
# The HTTPS rows call nginx with TLS and keepalive_timeout 0 (every call a new connection), its
# certificate verified against a test CA given through ssl_capath, HTTPS_CALLS (default 2000)
# calls each, HTTPS_CONCURRENT (default 1) in flight (a C module blocked tens of ms per call
# with more in flight makes SIPp retransmit, and the retransmissions call again), without and
# with tls_openssl + tls_mgm loaded (as in any OpenSIPS serving SIP over
# TLS: tls_openssl points OpenSSL's allocator at shared memory).
#
# Three more async HTTPS rows, KEEPALIVE_CALLS (default 10000) calls each, KEEPALIVE_CONCURRENT
# (default 50) in flight, each also printing how many TLS connections nginx accepted and how
# many calls failed (a result code other than 1 or a status other than 200: the resume route
# logs it and answers 500):
# - keepalive_mtls: HTTP/1.1 with keep-alive, nginx requiring a client certificate from the
#   test CA, which the script presents with rest_init_client_tls from a tls_mgm client domain,
#   tls_openssl loaded;
# - churn: nginx closes idle connections after 100 ms and is reloaded (`nginx -s reload`, its
#   workers replaced) every 0.3 s during the run;
# - h2: nginx offering HTTP/2 (ALPN), keep-alive.
# SECTIONS (default "http https keepalive") picks which of the three groups of rows run.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OPENSIPS_BIN:?set OPENSIPS_BIN to the opensips binary}"
: "${MODULES_DIR:?set MODULES_DIR to its modules directory}"
SIPP=${SIPP:-sipp}
CALLS=${CALLS:-30000}
CONCURRENT=${CONCURRENT:-100}
HTTPS_CALLS=${HTTPS_CALLS:-2000}
HTTPS_CONCURRENT=${HTTPS_CONCURRENT:-1}
KEEPALIVE_CALLS=${KEEPALIVE_CALLS:-10000}
KEEPALIVE_CONCURRENT=${KEEPALIVE_CONCURRENT:-50}
SECTIONS=${SECTIONS:-http https keepalive}
command -v "$SIPP" >/dev/null || { echo "SIPp not found: apt-get install sip-tester, or set SIPP"; exit 2; }
command -v nginx >/dev/null || { echo "nginx not found: .ci/install-deps bench"; exit 2; }

OPENSIPS_BIN=$OPENSIPS_BIN cargo build --release --quiet
work=$(mktemp -d /tmp/rest_client_e2e.XXXXXX)
# Every process started here (nginx, opensips) has $work in its command line.
cleanup() { pkill -f "$work/" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

http_port=$(free_port)
https_port=$(free_port)
mtls_port=$(free_port)
churn_port=$(free_port)
h2_port=$(free_port)
sip_port=$(free_port)
sh c_tests/make_certs.sh "$work/pki"
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
  ssl_certificate $work/pki/server.pem; ssl_certificate_key $work/pki/server.key;
  # One line per request naming its connection: distinct lines count the TLS connections.
  log_format connection '\$pid \$connection';
  server { listen 127.0.0.1:$https_port ssl; keepalive_timeout 0;
    location / { return 200 "hello from nginx\n"; } }
  server { listen 127.0.0.1:$mtls_port ssl; access_log $work/connections.log connection;
    ssl_verify_client on; ssl_client_certificate $work/pki/ca.pem;
    location / { return 200 "hello from nginx\n"; } }
  server { listen 127.0.0.1:$churn_port ssl; access_log $work/connections.log connection;
    keepalive_timeout 100ms;
    location / { return 200 "hello from nginx\n"; } }
  server { listen 127.0.0.1:$h2_port ssl http2; access_log $work/connections.log connection;
    location / { return 200 "hello from nginx\n"; } }
}
EOF
nginx -p "$work" -c "$work/nginx.conf"

# CPU time (user + system, in clock ticks) of every OpenSIPS process of this run.
opensips_ticks() {
  local total=0 pid
  for pid in $(pgrep -f "$work/opensips.cfg"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# run MODULE_PATH MODE [CALLS CONCURRENT [TLS_MODULES]]: prints calls/s and OpenSIPS CPU per call
run() {
  local module=$1 mode=$2 calls=${3:-$CALLS} concurrent=${4:-$CONCURRENT} tls_modules=${5:-} call
  local https="https://127.0.0.1:$https_port/"
  local async_get="async(rest_get(\"%s\", \$var(body), , \$var(code)), reply);"
  case $mode in
    sl) call='sl_send_reply(200, "OK");' ;;
    tm) call='t_newtran(); t_reply(200, "OK");' ;;
    blocking) call="rest_get(\"http://127.0.0.1:$http_port/\", \$var(body), , \$var(code)); sl_send_reply(200, \"OK\");" ;;
    async) call=$(printf "$async_get" "http://127.0.0.1:$http_port/") ;;
    blocking_https) call="rest_get(\"$https\", \$var(body), , \$var(code)); sl_send_reply(200, \"OK\");" ;;
    async_https) call=$(printf "$async_get" "$https") ;;
    keepalive_mtls) call="rest_init_client_tls(\"rest\"); $(printf "$async_get" "https://127.0.0.1:$mtls_port/")" ;;
    churn) call=$(printf "$async_get" "https://127.0.0.1:$churn_port/") ;;
    h2) call=$(printf "$async_get" "https://127.0.0.1:$h2_port/") ;;
  esac
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
$tls_modules
loadmodule "$module"
modparam("rest_client", "max_async_transfers", 1000)
modparam("rest_client", "ssl_capath", "$work/pki/capath")
route { $call }
route[reply] {
  if (\$rc < 0 || \$var(code) != 200) {
    xlog("L_ERR", "REST call failed: \$rc, status \$var(code)\n");
    t_reply(500, "REST call failed");
    exit;
  }
  t_reply(200, "OK");
}
EOF
  # Shared memory for the transactions kept 5 s after their reply at ~10000 calls/s.
  "$OPENSIPS_BIN" -F -m 3072 -f "$work/opensips.cfg" > "$work/opensips.log" 2>&1 &
  local pid=$!
  sleep 2
  local start end ok ticks0 ticks1 reloader=
  : > "$work/connections.log"
  if [ "$mode" = churn ]; then
    while :; do nginx -p "$work" -c "$work/nginx.conf" -s reload 2>/dev/null; sleep 0.3; done &
    reloader=$!
  fi
  ticks0=$(opensips_ticks)
  start=$(date +%s.%N)
  # A lost datagram is sent again after 500 ms; a call unanswered for 6 s fails (SIPp would
  # otherwise wait for it forever).
  "$SIPP" -sf c_tests/sipp_options.xml -s bench "127.0.0.1:$sip_port" -m "$calls" -l "$concurrent" -r 100000 \
    -timeout 120 -nostdin -trace_stat -stf "$work/stat.csv" > /dev/null 2>&1 || true
  end=$(date +%s.%N)
  ticks1=$(opensips_ticks)
  [ -n "$reloader" ] && { kill "$reloader"; wait "$reloader" 2>/dev/null || true; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  ok=$(tail -1 "$work/stat.csv" | awk -F';' '{print $16}')
  python3 -c "print(f'{$ok / ($end - $start):6.0f} calls/s, OpenSIPS CPU {($ticks1 - $ticks0) * 1e6 / $(getconf CLK_TCK) / max($ok, 1):4.0f} us/call ({$ok} of $calls answered)', end='')"
  case $mode in
    keepalive_mtls | churn | h2)
      printf ', %s REST calls failed, %s TLS connections' \
        "$(grep -c 'REST call failed' "$work/opensips.log" || true)" \
        "$(sort -u "$work/connections.log" | wc -l)" ;;
  esac
  echo
}

echo "OpenSIPS $("$OPENSIPS_BIN" -V | head -1 | sed 's/version: //'), 1 UDP worker, $CALLS OPTIONS, $CONCURRENT in flight"
ours="$PWD/target/release/librest_client.so"
section() { [[ " $SECTIONS " == *" $1 "* ]]; }
if section http; then
  printf '%-9s no REST call: %s\n' sl "$(run "$ours" sl)"
  for mode in blocking async; do
    [ "$mode" = async ] && printf '%-9s no REST call: %s\n' tm "$(run "$ours" tm)"
    printf '%-9s this module:  %s\n' "$mode" "$(run "$ours" "$mode")"
    if [ -n "${C_MODULE_DIR:-}" ]; then
      printf '%-9s C module:     %s\n' "$mode" "$(run "$C_MODULE_DIR/rest_client.so" "$mode")"
    fi
  done
fi
tls_openssl='loadmodule "tls_openssl.so"
loadmodule "tls_mgm.so"'
if section https; then
  for mode in blocking_https async_https; do
    for tls in "" "$tls_openssl"; do
      label="$mode"; [ -n "$tls" ] && label="$mode+tls_openssl"
      printf '%-26s this module:  %s\n' "$label" "$(run "$ours" "$mode" "$HTTPS_CALLS" "$HTTPS_CONCURRENT" "$tls")"
      if [ -n "${C_MODULE_DIR:-}" ]; then
        printf '%-26s C module:     %s\n' "$label" "$(run "$C_MODULE_DIR/rest_client.so" "$mode" "$HTTPS_CALLS" "$HTTPS_CONCURRENT" "$tls")"
      fi
    done
  done
fi
# A tls_mgm client domain holding the client certificate nginx's keepalive_mtls server requires.
mtls_modules="$tls_openssl
modparam(\"tls_mgm\", \"client_domain\", \"rest\")
modparam(\"tls_mgm\", \"certificate\", \"[rest]$work/pki/client.pem\")
modparam(\"tls_mgm\", \"private_key\", \"[rest]$work/pki/client.key\")
modparam(\"tls_mgm\", \"ca_list\", \"[rest]$work/pki/ca.pem\")"
if section keepalive; then
  for mode in keepalive_mtls churn h2; do
    tls=""; [ "$mode" = keepalive_mtls ] && tls=$mtls_modules
    printf '%-26s this module:  %s\n' "$mode" "$(run "$ours" "$mode" "$KEEPALIVE_CALLS" "$KEEPALIVE_CONCURRENT" "$tls")"
    if [ -n "${C_MODULE_DIR:-}" ]; then
      printf '%-26s C module:     %s\n' "$mode" "$(run "$C_MODULE_DIR/rest_client.so" "$mode" "$KEEPALIVE_CALLS" "$KEEPALIVE_CONCURRENT" "$tls")"
    fi
  done
fi
