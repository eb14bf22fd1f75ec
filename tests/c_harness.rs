//! Builds the C host harness and its C tests (c_tests/), and runs each against the module
//! `.so` that cargo built, the way OpenSIPS loads it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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

/// Compiles `c_tests/<name>.c` with the harness; cached per test binary.
fn build(name: &str) -> PathBuf {
    static OUT_DIR: OnceLock<PathBuf> = OnceLock::new();
    let out_dir = OUT_DIR.get_or_init(|| {
        let dir = module_path().parent().unwrap().join("c_tests");
        std::fs::create_dir_all(&dir).expect("create c_tests output dir");
        dir
    });
    let exe = out_dir.join(name);
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
    exe
}

/// Runs a C test with its cfg (or none) and extra environment.
fn run(name: &str, cfg: Option<&str>, env: &[(&str, &str)]) -> Output {
    let exe = build(name);
    let mut cmd = Command::new(&exe);
    cmd.current_dir(root()).arg(module_path());
    if let Some(cfg) = cfg {
        cmd.arg(root().join("c_tests/cfg").join(cfg));
    }
    cmd.envs(env.iter().copied());
    let output = cmd.output().expect("run C test");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn assert_passes(name: &str, cfg: &str) {
    let output = run(name, Some(cfg), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name} with {cfg} failed: {stdout}");
    assert!(stdout.contains(" passed, 0 failed"), "{name} printed no summary");
}

#[test]
fn blocking_functions() {
    assert_passes("test_blocking", "blocking.cfg");
}
