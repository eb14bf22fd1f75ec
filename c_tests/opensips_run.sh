# Sourced (not run) by the c_tests/*_opensips.sh scripts that drive a given OpenSIPS, from the
# repository's top directory, with run_name set: checks OPENSIPS_BIN and MODULES_DIR, builds
# this module for that OpenSIPS (ours_so is its path), and makes a work directory $work that
# is removed on exit, after every process whose pid the script added to $pids is killed.

: "${OPENSIPS_BIN:?set OPENSIPS_BIN to the opensips binary}"
: "${MODULES_DIR:?set MODULES_DIR to its modules directory}"
OPENSIPS_BIN=$OPENSIPS_BIN cargo build --release --quiet
ours_so="$(realpath "${CARGO_TARGET_DIR:-target}")/release/librest_client.so"
work=$(mktemp -d "/tmp/rest_client_$run_name.XXXXXX")
pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A UDP port free on 127.0.0.1 (also used for the test server's TCP port).
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# module_dir NAME MODULE.so MODULE...: the module directory $work/NAME, holding each MODULE.so
# of MODULES_DIR and MODULE.so (this module or the C one) as rest_client.so.
module_dir() {
	local dir=$work/$1 so=$2 m
	shift 2
	mkdir -p "$dir"
	for m in "$@"; do ln -s "$MODULES_DIR/$m.so" "$dir/$m.so"; done
	ln -s "$so" "$dir/rest_client.so"
}

# The loadmodule line UDP needs: 3.x loads it as a module (built in or not), 4.0 has it in the core.
udp_module() {
	if "$OPENSIPS_BIN" -V | grep -q "^version: opensips 3"; then echo 'loadmodule "proto_udp.so"'; fi
}

# start_test_server PORT: c_tests/http_test_server.py on 127.0.0.1:PORT, logging to $work/server.log.
start_test_server() {
	python3 c_tests/http_test_server.py --port "$1" --max-seconds 3600 \
		</dev/zero >"$work/server.log" 2>&1 &
	pids+=($!)
}

# wait_udp PORT: returns once something listens on UDP 127.0.0.1:PORT (or after 5 s).
wait_udp() {
	for _ in $(seq 50); do ss -lun | grep -q "127.0.0.1:$1 " && return; sleep 0.1; done
}

# cfg_head LOG_LEVEL WORKERS SIP_PORT NAME: the start of an OpenSIPS cfg logging to stderr, with
# WORKERS UDP workers on 127.0.0.1:SIP_PORT and the module directory $work/NAME.
cfg_head() {
	cat <<EOF
log_level=$1
stderror_enabled=yes
syslog_enabled=no
udp_workers=$2
socket=udp:127.0.0.1:$3
mpath="$work/$4/"
$(udp_module)
EOF
}
