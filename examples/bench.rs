//! `cargo run --release --example bench`: throughput, latency, worker blocking time and
//! memory of the module loaded by the C host harness, each beside raw libcurl in the same
//! run, against nginx (started and stopped by the bench; `.ci/install-deps bench` installs it)
//! and the scripted test server. See c_tests/bench.c for the measures and the environment
//! variables, docs/performance.md for results.

#[path = "../c_tests/harness_build.rs"]
mod harness_build;

use std::process::Command;

fn main() {
    if Command::new("nginx").arg("-v").output().is_err() {
        eprintln!("the bench needs nginx: run `.ci/install-deps bench` (Debian's nginx-light)");
        std::process::exit(2);
    }
    let root = harness_build::root();
    let nginx_dir = harness_build::profile_dir().join("bench-nginx");
    let _ = std::fs::remove_dir_all(&nginx_dir);
    std::fs::create_dir_all(&nginx_dir).expect("create the nginx directory");
    let certs = Command::new("sh")
        .arg(root.join("c_tests/make_certs.sh"))
        .arg(&nginx_dir)
        .status()
        .expect("run make_certs.sh");
    assert!(certs.success(), "make_certs.sh failed");
    let bench = harness_build::build("bench", &["-lcurl"]);
    let status = Command::new(bench)
        .current_dir(root)
        .arg(harness_build::module_path())
        .arg(root.join("c_tests/cfg/bench.cfg"))
        .arg(&nginx_dir)
        .status()
        .expect("run the bench");
    std::process::exit(status.code().unwrap_or(1));
}
