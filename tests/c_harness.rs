//! Builds the C host harness and its C tests (c_tests/), and runs each against the module
//! `.so` that cargo built (or the one `REST_CLIENT_MODULE` names), the way OpenSIPS loads it.

use std::process::{Command, Output};

#[path = "../c_tests/harness_build.rs"]
mod harness_build;
use harness_build::{build, build_preload, module_has_test_hooks, module_path, root};

/// Runs a C test with its cfg (or none), extra arguments and extra environment.
fn run(name: &str, cfg: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let exe = build(name, &[]);
    let mut cmd = Command::new(&exe);
    cmd.current_dir(root()).arg(module_path());
    if let Some(cfg) = cfg {
        cmd.arg(root().join("c_tests/cfg").join(cfg));
    }
    cmd.args(args).envs(env.iter().copied());
    let output = cmd.output().expect("run C test");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// Runs a C test that must pass; returns its stderr (the module's log).
fn passing_log(name: &str, cfg: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = run(name, cfg, args, env);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{name} {args:?} with {cfg:?} failed: {stdout}"
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "{name} printed no summary"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_passes(name: &str, cfg: Option<&str>, args: &[&str]) {
    passing_log(name, cfg, args, &[]);
}

#[test]
fn blocking_functions() {
    assert_passes("test_blocking", Some("blocking.cfg"), &[]);
}

#[test]
fn each_worker_process_reuses_its_own_connection() {
    assert_passes("test_processes", Some("blocking.cfg"), &["reuse"]);
}

#[test]
fn no_concurrent_connects_refuses_a_second_process() {
    assert_passes("test_processes", Some("gate.cfg"), &["gate"]);
}

/// Issue 17 item 5: a second async connect from the same process is refused too.
#[test]
fn no_concurrent_connects_refuses_a_second_async_call_of_the_same_process() {
    assert_passes("test_processes", Some("gate.cfg"), &["async_gate"]);
}

#[test]
fn conn_lifetime_skips_the_gate_after_a_recent_success() {
    assert_passes("test_processes", Some("gate_lifetime.cfg"), &["lifetime"]);
}

#[test]
fn https_with_ca_path_and_tls_mgm_client_certificates() {
    assert_passes("test_tls", Some("tls.cfg"), &["verify"]);
}

#[test]
fn https_without_host_name_check() {
    assert_passes("test_tls", Some("tls_nohostcheck.cfg"), &["nohostcheck"]);
}

#[test]
fn https_without_verification() {
    assert_passes("test_tls", Some("tls_noverify.cfg"), &["noverify"]);
}

#[test]
fn transformations() {
    assert_passes("test_transforms", Some("blocking.cfg"), &[]);
}

/// Runs test_startup with `cfg`; returns (stdout, stderr, exit code).
fn startup(cfg: &str, env: &[(&str, &str)]) -> (String, String, Option<i32>) {
    let output = run("test_startup", Some(cfg), &[], env);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        text(&output.stdout),
        text(&output.stderr),
        output.status.code(),
    )
}

#[test]
fn startup_accepts_good_parameters_and_clamps_like_the_c_module() {
    let (out, err, _) = startup("blocking.cfg", &[]);
    assert!(out.contains("mod_init=0"), "{out}");
    let (out, err2, _) = startup("startup_clamped_timeout.cfg", &[]);
    assert!(out.contains("mod_init=0"), "{out}");
    assert!(
        err2.contains("WARNING:rest_client") && err2.contains("using 5000 ms"),
        "{err2}"
    );
    assert!(!err.contains("WARNING"), "{err}");
    let (out, err3, _) = startup("startup_transfer_over_inflight.cfg", &[]);
    assert!(out.contains("mod_init=0"), "{out}");
    assert!(
        err3.contains(
            "max_transfer_size (102400 KB) is larger than max_inflight_body_bytes (67108864 \
             bytes): a response body larger than 67108864 bytes fails even alone"
        ),
        "{err3}"
    );
}

#[test]
fn startup_refuses_bad_parameters_with_a_clear_error() {
    for (cfg, message) in [
        (
            "startup_bad_http_version.cfg",
            "curl_http_version 30 is not supported",
        ),
        (
            "startup_negative_timeout.cfg",
            "curl_timeout must not be negative",
        ),
        ("startup_tls_without_tls_mgm.cfg", "load the tls_mgm module"),
        (
            "startup_bad_trace_state.cfg",
            "trace_state: 'OpenSIPS=rest' is not a key=value member",
        ),
        (
            "startup_cache_unbound.cfg",
            "service lcr: cannot bind the cachedb engine of redis://127.0.0.1:1/ (is its \
             module loaded before rest_client?)",
        ),
    ] {
        let (out, err, _) = startup(cfg, &[]);
        assert!(out.contains("mod_init=-1"), "{cfg}: {out}");
        assert!(
            err.contains("ERROR:rest_client") && err.contains(message),
            "{cfg}: {err}"
        );
    }
    for (cfg, message) in [
        ("startup_string_for_int.cfg", "type mismatch"),
        ("startup_unknown_param.cfg", "not found"),
    ] {
        let (out, err, _) = startup(cfg, &[]);
        assert!(out.contains("cfg=-1"), "{cfg}: {out}");
        assert!(err.contains(message), "{cfg}: {err}");
    }
}

#[test]
fn a_core_of_another_build_refuses_the_module() {
    let (out, err, code) = startup("blocking.cfg", &[("HARNESS_CORE_FLAGS", "STATS: Off")]);
    assert_eq!(code, Some(1));
    assert!(
        !out.contains("loaded") && err.contains("compile flags mismatch"),
        "{err}"
    );
    let version = [("HARNESS_CORE_VERSION", "opensips 3.4.18 (x86_64/linux)")];
    let (_, err, code) = startup("blocking.cfg", &version);
    assert_eq!(code, Some(1));
    assert!(err.contains("version mismatch"), "{err}");
}

#[test]
fn expect_100_and_http_version_options() {
    assert_passes("test_options", Some("expect_http11.cfg"), &["1.1"]);
    assert_passes("test_options", Some("expect_http10.cfg"), &["1.0"]);
}

#[test]
fn async_calls_through_a_reactor() {
    assert_passes("test_async", Some("async.cfg"), &["fallback"]);
}

#[test]
fn async_fail_fast_past_max_async_transfers() {
    assert_passes("test_async", Some("async_failfast.cfg"), &["failfast"]);
}

/// Issue 17 item 1: a `launch()` in a resume route that tm runs before it returns (a cache hit,
/// tm failing before the function) is resumed by the core, not through tm.
#[test]
fn calls_made_in_a_route_run_inline_are_resumed_by_their_own_starter() {
    assert_passes("test_inline_routes", Some("async.cfg"), &[]);
}

#[test]
fn response_bodies_in_flight_are_capped_per_process() {
    let stderr = passing_log("test_inflight", Some("inflight.cfg"), &["explicit"], &[]);
    assert!(
        stderr.contains("would exceed max_inflight_body_bytes (100000 bytes), aborted"),
        "{stderr}"
    );
}

/// Issue 17, item 6: without the parameter, a process holds at most 64 MiB of bodies.
#[test]
fn response_bodies_in_flight_are_capped_by_default() {
    let stderr = passing_log(
        "test_inflight",
        Some("inflight_default.cfg"),
        &["default"],
        &[],
    );
    assert!(
        stderr.contains("would exceed max_inflight_body_bytes (67108864 bytes), aborted"),
        "{stderr}"
    );
}

#[test]
fn host_neutral_c_api() {
    assert_passes("test_capi", None, &[]);
}

#[test]
fn every_method_response_headers_and_millisecond_limits() {
    assert_passes("test_extensions", Some("extensions.cfg"), &[]);
}

/// Issue 12: one answer for every worker through cachedb, writes that invalidate everywhere,
/// Cache-Control, an outage that fails no call (reported once per process), flush.
#[test]
fn a_shared_response_cache_across_processes() {
    let stderr = passing_log("test_shared_cache", Some("shared_cache.cfg"), &[], &[]);
    let reports = stderr
        .matches("service shared: the shared cache failed")
        .count();
    assert_eq!(reports, 2, "one report per process in the outage: {stderr}");
    // Issue 17, item 10: a couchbase error (-2) and a mongodb -2 are outages.
    for report in [
        "service cb: the shared cache failed to read (get returned -2)",
        "service mongo: the shared cache failed to read (get returned -2)",
        "service mongo: the cachedb engine of mongodb:// does not tell a missing key from a \
         failed read",
    ] {
        assert!(stderr.contains(report), "{report}: {stderr}");
    }
    assert!(
        stderr.contains("no service named 'nosuch' has a cache"),
        "{stderr}"
    );
}

/// Issue 20: a stale answer in place of a failure of the backend (503, timeout, refused).
#[test]
fn stale_if_error_carries_an_outage() {
    assert_passes(
        "test_cache_resilience",
        Some("cache_resilience.cfg"),
        &["stale"],
    );
}

/// Issue 20: a stale answer at once, refreshed by one background transfer.
#[test]
fn stale_while_revalidate_refreshes_in_the_background() {
    assert_passes(
        "test_cache_resilience",
        Some("cache_resilience.cfg"),
        &["revalidate"],
    );
}

/// Issue 20: one transfer for concurrent misses of a key, in a process and across processes.
#[test]
fn concurrent_misses_make_one_transfer() {
    assert_passes(
        "test_cache_resilience",
        Some("cache_resilience.cfg"),
        &["coalesce"],
    );
}

/// Issue 20: instances sharing a store make one transfer for a key they miss together.
#[test]
fn instances_sharing_a_store_make_one_transfer() {
    assert_passes(
        "test_cache_resilience",
        Some("cache_resilience.cfg"),
        &["instances"],
    );
}

/// Issue 20: a slow shared level costs a lookup one operation; three slow ones in a row skip
/// it for a while (logged once).
#[test]
fn a_slow_shared_level_is_skipped_for_a_while() {
    let log = passing_log(
        "test_cache_resilience",
        Some("cache_resilience.cfg"),
        &["bound"],
        &[],
    );
    assert_eq!(
        log.matches("service bounded: the shared cache took")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("skipped for 1000 ms"), "{log}");
}

#[test]
fn named_services_with_credentials_and_a_response_cache() {
    let stderr = passing_log("test_services", Some("services.cfg"), &[], &[]);
    for message in [
        "unknown service 'nosuch'",
        "url must not contain CR, LF",
        "bearer token must not contain CR, LF",
        "item 4 is not key=value",
        "service api: a '.' or '..' segment in the path is not allowed",
        "rest_update_service: unknown service 'nosuch'",
        "rest_update_service: service api: item 1: only auth and header items can be updated",
        "rest_update_service: service api: header must be one 'Name: value' line",
        "service api: credentials renewed for every process (update 1)",
    ] {
        assert!(stderr.contains(message), "{message}: {stderr}");
    }
    for secret in ["sekret", "p4ss", "dXNlcjpwNHNz", "LEAKED"] {
        assert!(
            !stderr.contains(secret),
            "a credential reached the log: {stderr}"
        );
    }
}

/// Issue 19: several base URLs per service, failover, ejection shared by every process,
/// fail-fast, admission limits, Retry-After, the retry budget, and what shows them.
#[test]
fn a_service_with_several_urls_fails_over_and_ejects() {
    let stderr = passing_log("test_upstreams", Some("upstreams.cfg"), &[], &[]);
    assert!(
        stderr.contains("service fo: http://127.0.0.1:") && stderr.contains("ejected for 400 ms"),
        "{stderr}"
    );
    for refused in [
        "balance must be first or round_robin",
        "b2: url must start with http",
    ] {
        assert!(stderr.contains(refused), "{refused}: {stderr}");
    }
}

#[test]
fn hep_tracing_through_the_tracer_module() {
    assert_passes("test_tracing", Some("tracing.cfg"), &[]);
}

/// Issue 17 item 4: one secret policy for every output; the log is this test's stderr.
#[test]
fn no_secret_reaches_any_output() {
    let log = passing_log("test_secrets", Some("secrets.cfg"), &[], &[]);
    for secret in [
        "SECRETU", "SECRETP", "SECRETA", "SECRETH", "SECRETB", "SECRETT",
    ] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(
        log.contains("timed out for http://***@127.0.0.1:")
            && log.contains("appid=***")
            && log.contains("token=***"),
        "the failures' URLs are not logged masked:\n{log}"
    );
}

/// Runs test_async_limits in `mode` with `cfg` and `env`; returns its stderr (the module's log).
fn async_limits(mode: &str, cfg: &str, env: &[(&str, &str)]) -> String {
    passing_log("test_async_limits", Some(cfg), &[mode], env)
}

/// Issue 9.1: a 5 s DNS lookup (LD_PRELOAD getaddrinfo) never holds the worker past the limit.
#[test]
fn slow_dns_never_holds_the_worker_past_the_limit() {
    let slow_dns = build_preload("slow_dns");
    async_limits(
        "dns",
        "async_dns.cfg",
        &[("LD_PRELOAD", slow_dns.to_str().expect("utf-8 path"))],
    );
}

/// Issue 17.7: during a DNS brownout (30 s lookups), 1000 async calls leave a bounded number of
/// lookup threads, and the refusals are logged at most once per 10 s.
#[test]
fn slow_dns_leaves_a_bounded_number_of_lookup_threads() {
    let slow_dns = build_preload("slow_dns");
    let log = async_limits(
        "dnsthreads",
        "async_dns.cfg",
        &[("LD_PRELOAD", slow_dns.to_str().expect("utf-8 path"))],
    );
    let refusals = log.matches("name lookups of 30.slow-dns.test:").count();
    assert_eq!(refusals, 1, "{log}");
}

/// Issue 9.2: with curl_timeout 0, async(..., seconds) still ends the call; startup says so.
#[test]
fn async_timeout_applies_without_curl_timeout() {
    let log = async_limits("nolimit", "async_nolimit.cfg", &[]);
    assert!(log.contains("curl_timeout is 0"), "{log}");
}

/// Issue 9.3: a panic in the reactor callback keeps the process's descriptor in the reactor.
/// Needs the debug build's fault injection: skipped for a release build (the packaged one).
#[test]
fn reactor_panic_keeps_async_calls_resuming() {
    if !module_has_test_hooks() {
        println!("skipped: {} has no test hooks", module_path().display());
        return;
    }
    let log = async_limits(
        "panic",
        "async.cfg",
        &[("REST_CLIENT_TEST_REACTOR_PANICS", "1")],
    );
    assert!(
        log.contains("internal error (panic) in async transfers"),
        "{log}"
    );
}

/// Issue 9.4: calls whose resume tm dropped free their async slots, with a log line.
#[test]
fn dropped_resumes_free_their_slots() {
    let log = async_limits("dropped", "async_failfast.cfg", &[]);
    assert!(log.contains("the core did not resume it"), "{log}");
}

/// Issue 9.5: launch() whose call cannot start runs its report route with the code.
#[test]
fn launch_that_cannot_start_reports_its_code() {
    async_limits("launch", "async_failfast.cfg", &[]);
}

/// Issue 9, items 9 and 14: only HTTP(S) is reachable; log lines mask credentials and escape
/// line breaks.
#[test]
fn only_http_and_https_and_log_lines_safe_to_read() {
    let stderr = passing_log("test_boundaries", Some("blocking.cfg"), &[], &[]);
    assert!(
        stderr.contains("URL scheme 'file' is not allowed, only http and https"),
        "{stderr}"
    );
    assert!(
        stderr.contains("x?page=2&access_token=***&api_key=***&Signature=***"),
        "{stderr}"
    );
    for secret in ["pw0rd", "T0KEN", "K3Y", "S1G"] {
        assert!(
            !stderr.contains(secret),
            "{secret} reached the log: {stderr}"
        );
    }
    assert!(stderr.contains("/a\\r\\nINJECTED: by the URL"), "{stderr}");
    assert!(
        stderr.contains("'no\\r\\nINJECTED: by a service name'"),
        "{stderr}"
    );
    assert!(
        !stderr.lines().any(|line| line.starts_with("INJECTED")),
        "a log line was split: {stderr}"
    );
}

/// Issue 11: statistics in the core's shared counters, summed over processes.
#[test]
fn statistics_add_up_over_processes() {
    assert_passes("test_statistics", Some("stats.cfg"), &[]);
}

/// Issue 22: a response nobody asked for, bytes past the end of an answer, and ambiguous
/// framing never become another call's answer (blocking, async, HTTP and HTTPS).
#[test]
fn a_server_cannot_forge_an_answer() {
    let log = passing_log("test_forged", Some("forged.cfg"), &[], &[]);
    for message in [
        "/echo: the kept-alive connection held 72 bytes nobody asked for before the request \
         was sent: connection closed, sending the request on a new connection",
        "/framing?cl=12&cl=10: the response has conflicting Content-Length values: refused, \
         connection closed",
        "/framing?te=chunked&cl=12: the response has both Transfer-Encoding and \
         Content-Length: refused, connection closed",
    ] {
        assert!(log.contains(message), "{message}: {log}");
    }
}

/// Issues 17 and 22: every kind of hostile answer ends in time with an error, blocking and
/// async, the worker keeps answering and its memory stays flat over rounds.
#[test]
fn hostile_servers_end_in_time_with_an_error() {
    assert_passes("test_hostile", Some("forged.cfg"), &[]);
}

/// Issue 21: W3C trace context to the backend, off by default.
#[test]
fn trace_context_to_the_backend() {
    assert_passes("test_trace_context", Some("trace_context.cfg"), &["on"]);
    assert_passes("test_trace_context", Some("blocking.cfg"), &["off"]);
}
