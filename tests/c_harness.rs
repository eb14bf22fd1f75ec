//! Builds the C host harness and its C tests (c_tests/), and runs each against the module
//! `.so` that cargo built, the way OpenSIPS loads it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cdylib next to this test's deps directory (target/<profile>/librest_client.so).
fn module_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let so = profile_dir.join("librest_client.so");
    assert!(so.exists(), "{} missing: run through `cargo test`", so.display());
    so
}

/// Compiles `c_tests/<name>.c` with the harness, once per test run (tests run in parallel).
fn build(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = module_path().parent().unwrap().join("c_tests");
    let exe = out_dir.join(name);
    if built.iter().any(|n| n == name) {
        return exe;
    }
    std::fs::create_dir_all(&out_dir).expect("create c_tests output dir");
    let c = root().join("c_tests");
    let status = Command::new("cc")
        .args(["-std=gnu11", "-g", "-O1", "-Wall", "-Wextra", "-Werror", "-rdynamic"])
        .arg("-fsanitize=undefined")
        .arg("-fno-sanitize-recover=undefined")
        .arg(c.join("harness.c"))
        .arg(c.join(format!("{name}.c")))
        .arg("-I")
        .arg(&c)
        .arg("-I")
        .arg(root().join("include"))
        .arg("-o")
        .arg(&exe)
        .args(["-ldl", "-lpthread"])
        .status()
        .expect("run cc");
    assert!(status.success(), "compiling {name}.c failed");
    built.push(name.to_string());
    exe
}

/// Runs a C test with its cfg (or none), extra arguments and extra environment.
fn run(name: &str, cfg: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let exe = build(name);
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

fn assert_passes(name: &str, cfg: &str, args: &[&str]) {
    let output = run(name, Some(cfg), args, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name} with {cfg} failed: {stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{name} printed no summary");
}

#[test]
fn blocking_functions() {
    assert_passes("test_blocking", "blocking.cfg", &[]);
}

#[test]
fn each_worker_process_reuses_its_own_connection() {
    assert_passes("test_processes", "blocking.cfg", &["reuse"]);
}

#[test]
fn no_concurrent_connects_refuses_a_second_process() {
    assert_passes("test_processes", "gate.cfg", &["gate"]);
}

#[test]
fn conn_lifetime_skips_the_gate_after_a_recent_success() {
    assert_passes("test_processes", "gate_lifetime.cfg", &["lifetime"]);
}

#[test]
fn https_with_ca_path_and_tls_mgm_client_certificates() {
    assert_passes("test_tls", "tls.cfg", &["verify"]);
}

#[test]
fn https_without_verification() {
    assert_passes("test_tls", "tls_noverify.cfg", &["noverify"]);
}
