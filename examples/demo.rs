//! `cargo run --release --example demo`: builds the C host harness, loads the module `.so`
//! into it with modules/demo.cfg, and calls each script function against the scripted HTTP
//! server on loopback (c_tests/http_test_server.py).

#[path = "../c_tests/harness_build.rs"]
mod harness_build;

fn main() {
    let demo = harness_build::build("demo", &[]);
    let status = std::process::Command::new(demo)
        .current_dir(harness_build::root())
        .arg(harness_build::module_path())
        .arg(harness_build::root().join("modules/demo.cfg"))
        .status()
        .expect("run the demo");
    std::process::exit(status.code().unwrap_or(1));
}
