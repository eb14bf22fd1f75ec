#!/usr/bin/env bash
# Opt-in bench of issue 19 in a real OpenSIPS: a backend outage must not become a SIP outage.
# Two nginx backends A and B on loopback; SIPp offers RATE OPTIONS per second for PHASE_SECONDS
# per phase to an OpenSIPS with 4 UDP workers, whose script calls the backends and answers 200
# when a backend answered 200, else 480 "Fallback" (the script's local decision). Phases:
#   up        both backends up;
#   a_hole    A blackholed (nginx A stopped, its port held by a listener whose accept queue is
#             full, so connects hang);
#   both_down A and B blackholed;
#   back      both up again (the listeners gone, nginx restarted).
# Per phase: calls offered, answered (200 or 480), answered by a backend (200), the share of
# the offered calls a backend answered, the answered calls per second, p50/p99 of the SIP reply
# time (SIPp's response time), p99 after the phase's first PHASE_WARMUP seconds; for `back`,
# how long after the restart A got its first request again.
#
# Variants (same run): this module with one service of two URLs (`lcr`, connect_timeout_ms
# 1000, EJECT_MS ejections), async and blocking; the C module (when C_MODULE_DIR names the
# directory holding its rest_client.so) with the script an operator would write: A with
# connection_timeout 1, then B, async and blocking. Last, this module's admission limit: a
# backend answering after 2 s (c_tests/http_test_server.py /delay), `max_in_flight=50`,
# SLOW_RATE async calls per second for PHASE_SECONDS; the server reports the most requests it
# answered at once.
#
#   .ci/install-deps bench            # nginx, SIPp (Debian package sip-tester)
#   OPENSIPS_BIN=/usr/sbin/opensips MODULES_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules \
#   C_MODULE_DIR=/usr/lib/x86_64-linux-gnu/opensips/modules c_tests/failover_opensips.sh
#
# MODULES_DIR holds tm and sl; this module is built here with OPENSIPS_BIN (cargo build
# --release). RATE (default 2000), PHASE_SECONDS (default 60), PHASE_WARMUP (default 5),
# EJECT_MS (default 5000: the base ejection, so that `back` fits in a phase), SLOW_RATE
# (default 200), VARIANTS (default "ours_async ours_blocking c_async c_blocking admission");
# LOG_LEVEL (default 1) is OpenSIPS's, and KEEP_LOGS names a directory that gets each
# variant's OpenSIPS log.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OPENSIPS_BIN:?set OPENSIPS_BIN to the opensips binary}"
: "${MODULES_DIR:?set MODULES_DIR to its modules directory}"
SIPP=${SIPP:-sipp}
RATE=${RATE:-2000}
PHASE_SECONDS=${PHASE_SECONDS:-60}
PHASE_WARMUP=${PHASE_WARMUP:-5}
EJECT_MS=${EJECT_MS:-5000}
SLOW_RATE=${SLOW_RATE:-200}
VARIANTS=${VARIANTS:-ours_async ours_blocking c_async c_blocking admission}
command -v "$SIPP" >/dev/null || { echo "SIPp not found: apt-get install sip-tester, or set SIPP"; exit 2; }
command -v nginx >/dev/null || { echo "nginx not found: .ci/install-deps bench"; exit 2; }

OPENSIPS_BIN=$OPENSIPS_BIN cargo build --release --quiet
ours="$PWD/target/release/librest_client.so"
work=$(mktemp -d /tmp/rest_client_failover.XXXXXX)
declare -A hole=()
opensips_pid= slow_pid=
stop_pid() {
  if [ -n "$1" ]; then kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; fi
}
cleanup() {
  set +e
  stop_pid "$opensips_pid"
  for name in "${!hole[@]}"; do stop_pid "${hole[$name]}"; done
  for name in a b; do
    if [ -f "$work/nginx_$name.pid" ]; then kill "$(cat "$work/nginx_$name.pid")"; fi
  done
  stop_pid "$slow_pid"
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A port=([a]=$(free_port) [b]=$(free_port))
sip_port=$(free_port)

for name in a b; do
  cat > "$work/nginx_$name.conf" <<EOF
worker_processes 1;
pid $work/nginx_$name.pid;
error_log $work/nginx_$name.log;
events { worker_connections 4096; }
http {
  log_format at '\$msec';
  access_log $work/access_$name.log at;
  keepalive_requests 100000000;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:${port[$name]} reuseport; location / { return 200 "{\"gw\": \"$name\"}\n"; } }
}
EOF
done
nginx_up() { nginx -p "$work" -c "$work/nginx_$1.conf"; }
nginx_down() {
  local pid; pid=$(cat "$work/nginx_$1.pid")
  kill "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
}
# blackhole NAME: nginx NAME stopped, its port held by a listener whose accept queue is full.
blackhole() {
  nginx_down "$1"
  python3 - "${port[$1]}" > "$work/hole_$1" <<'PY' &
import select, socket, sys, time
port = int(sys.argv[1])
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", port))
listener.listen(0)
held = []
for _ in range(16):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    held.append(c)
    if not select.select([], [c], [], 0.2)[1]:
        break
print("ready", flush=True)
time.sleep(1e6)
PY
  hole[$1]=$!
  until grep -q ready "$work/hole_$1" 2>/dev/null; do sleep 0.05; done
}
restore() { stop_pid "${hole[$1]}"; unset "hole[$1]"; nginx_up "$1"; }
for name in a b; do nginx_up "$name"; done

# Each answered call logs its outcome, the time it was sent and the time it was answered.
cat > "$work/options.xml" <<'EOF'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS answered 200 (a backend answered) or 480 (the script's fallback)">
  <nop><action><gettimeofday assign_to="s0,u0"/></action></nop>
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" optional="true" next="ok"/>
  <recv response="480" timeout="6000"/>
  <nop next="end">
    <action><gettimeofday assign_to="s1,u1"/><log message="fallback [$s0] [$u0] [$s1] [$u1]"/></action>
  </nop>
  <label id="ok"/>
  <nop><action><gettimeofday assign_to="s1,u1"/><log message="ok [$s0] [$u0] [$s1] [$u1]"/></action></nop>
  <label id="end"/>
</scenario>
EOF

# The script of a variant: a backend's 200 answered 200, anything else 480 ($rc is kept at
# once: the next statement, an `if` included, sets it again).
script() {
  local a="http://127.0.0.1:${port[a]}/" b="http://127.0.0.1:${port[b]}/"
  local ok='$var(rc) == 1 && $var(code) == 200' rc='$var(rc) = $rc;'
  case $1 in
    ours_async) cat <<EOF
route { async(rest_get("lcr://", \$var(body), , \$var(code)), answer); }
route[answer] { $rc if ($ok) { t_reply(200, "OK"); exit; } t_reply(480, "Fallback"); }
EOF
      ;;
    ours_blocking) cat <<EOF
route {
  rest_get("lcr://", \$var(body), , \$var(code)); $rc
  if ($ok) { sl_send_reply(200, "OK"); exit; }
  sl_send_reply(480, "Fallback");
}
EOF
      ;;
    c_async) cat <<EOF
route { async(rest_get("$a", \$var(body), , \$var(code)), from_a); }
route[from_a] {
  $rc
  if ($ok) { t_reply(200, "OK"); exit; }
  async(rest_get("$b", \$var(body), , \$var(code)), from_b);
}
route[from_b] { $rc if ($ok) { t_reply(200, "OK"); exit; } t_reply(480, "Fallback"); }
EOF
      ;;
    c_blocking) cat <<EOF
route {
  rest_get("$a", \$var(body), , \$var(code)); $rc
  if (!($ok)) { rest_get("$b", \$var(body), , \$var(code)); $rc }
  if ($ok) { sl_send_reply(200, "OK"); exit; }
  sl_send_reply(480, "Fallback");
}
EOF
      ;;
    admission) cat <<EOF
route { async(rest_get("slow://delay?ms=2000", \$var(body), , \$var(code)), answer); }
route[answer] { $rc if ($ok) { t_reply(200, "OK"); exit; } t_reply(480, "Fallback"); }
EOF
      ;;
  esac
}

start_opensips() { # MODULE VARIANT
  cat > "$work/opensips.cfg" <<EOF
log_level=${LOG_LEVEL:-1}
stderror_enabled=yes
syslog_enabled=no
udp_workers=4
socket=udp:127.0.0.1:$sip_port
mpath="$MODULES_DIR/"
loadmodule "proto_udp.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "$1"
modparam("rest_client", "connection_timeout", 1)
modparam("rest_client", "curl_timeout", 3)
modparam("rest_client", "max_async_transfers", 4000)
EOF
  if [ "$1" = "$ours" ]; then
    cat >> "$work/opensips.cfg" <<EOF
modparam("rest_client", "service", "name=lcr; url=http://127.0.0.1:${port[a]}/; url=http://127.0.0.1:${port[b]}/; connect_timeout_ms=1000; eject_ms=$EJECT_MS; eject_max_ms=$((EJECT_MS * 2))")
modparam("rest_client", "service", "name=slow; url=http://127.0.0.1:${slow_port:-9}/; timeout_ms=3000; max_in_flight=50")
EOF
  fi
  script "$2" >> "$work/opensips.cfg"
  "$OPENSIPS_BIN" -F -m 4096 -f "$work/opensips.cfg" > "$work/opensips.log" 2>&1 &
  opensips_pid=$!
  sleep 3
}

# phase NAME RATE: one SIPp run of RATE calls/s for PHASE_SECONDS; prints its row.
phase() {
  local name=$1 rate=$2 calls=$(($2 * PHASE_SECONDS)) dir="$work/sipp_${variant}_$1"
  mkdir -p "$dir"
  cp "$work/options.xml" "$dir/"
  (cd "$dir" && "$SIPP" -sf options.xml -s lcr "127.0.0.1:$sip_port" -m "$calls" -r "$rate" \
    -l 100000 -timeout $((PHASE_SECONDS + 30)) -nostdin -trace_logs > /dev/null 2>&1 || true)
  python3 - "$dir" "$name" "$calls" "$PHASE_WARMUP" <<'PY'
import glob, sys
d, name, offered, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
calls = []  # (sent, reply time in ms, outcome)
for f in glob.glob(d + "/*_logs.log"):
    for line in open(f):
        parts = line.split()
        if len(parts) == 5 and parts[0] in ("ok", "fallback"):
            s0, u0, s1, u1 = map(float, parts[1:])
            calls.append((s0 + u0 / 1e6, (s1 - s0) * 1e3 + (u1 - u0) / 1e3, parts[0]))
calls.sort()
def pct(values, p):
    values = sorted(values)
    return f"{values[min(len(values) - 1, int(len(values) * p))]:7.2f}" if values else "      -"
ok = [c for c in calls if c[2] == "ok"]
first = calls[0][0] if calls else 0
span = max(c[0] + c[1] / 1e3 for c in calls) - first if calls else 0
steady = [c[1] for c in calls if c[0] - first >= warmup]
fallback = [c[1] for c in calls if c[2] == "fallback"]
print(f"{name:<10} {offered:>7} offered {len(calls):>7} answered {len(ok):>7} by a backend "
      f"({100 * len(ok) / offered:6.2f} %) {len(calls) / span if span else 0:6.0f}/s  "
      f"p50 {pct([c[1] for c in calls], .5)} ms  p99 {pct([c[1] for c in calls], .99)} ms  "
      f"p99 after {warmup:.0f} s {pct(steady, .99)} ms  fallback p99 {pct(fallback, .99)} ms")
PY
}

# The four phases of a variant.
outage_phases() {
  : > "$work/access_a.log"; : > "$work/access_b.log"
  phase up "$RATE"
  blackhole a
  phase a_hole "$RATE"
  blackhole b
  phase both_down "$RATE"
  local restored; restored=$(date +%s.%N)
  restore a; restore b
  phase back "$RATE"
  python3 - "$work/access_a.log" "$restored" <<'PY'
import sys
restored = float(sys.argv[2])
times = [float(line) for line in open(sys.argv[1]) if line.strip() and float(line) > restored]
print(f"back: A's first request {min(times) - restored:.1f} s after the restart, {len(times)} in the phase"
      if times else "back: A got no request")
PY
}

echo "OpenSIPS $("$OPENSIPS_BIN" -V | head -1 | sed 's/version: //'), 4 UDP workers, $RATE OPTIONS/s, $PHASE_SECONDS s a phase"
for variant in $VARIANTS; do
  case $variant in
    ours_*) module=$ours ;;
    c_*) [ -n "${C_MODULE_DIR:-}" ] || continue; module="$C_MODULE_DIR/rest_client.so" ;;
    admission)
      coproc SLOW { exec python3 c_tests/http_test_server.py --max-seconds 100000; }
      slow_pid=$SLOW_PID
      read -r _ slow_port <&"${SLOW[0]}"
      module=$ours ;;
  esac
  echo "== $variant"
  start_opensips "$module" "$variant"
  if [ "$variant" = admission ]; then
    phase slow "$SLOW_RATE"
    stats=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:$slow_port/stats').read().decode())")
    echo "slow backend: $stats"
  else
    outage_phases
  fi
  stop_pid "$opensips_pid"; opensips_pid=
  [ -n "${KEEP_LOGS:-}" ] && cp "$work/opensips.log" "$KEEP_LOGS/opensips_$variant.log"
done
