//! Shared by tests/c_harness.rs and examples/demo.rs: finds the module `.so` cargo built and
//! compiles a C program of c_tests/ with the host harness.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Names a module `.so` for the C programs to load instead of this profile's build: e.g. the
/// one unpacked from the Debian package (`.ci/check-deb`).
pub const MODULE_ENV: &str = "REST_CLIENT_MODULE";

/// The build profile's directory (target/<profile>), found from the running test
/// (target/<profile>/deps/) or example (target/<profile>/examples/).
pub fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        exe.parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf()
    })
}

/// The module `.so` the C programs load: the file [`MODULE_ENV`] names, or this build
/// profile's (target/<profile>/librest_client.so). Cargo builds only the rlib for tests and
/// examples, so the cdylib is built here, once per process.
pub fn module_path() -> PathBuf {
    static SO: OnceLock<PathBuf> = OnceLock::new();
    SO.get_or_init(|| {
        if let Some(so) = std::env::var_os(MODULE_ENV) {
            return PathBuf::from(so);
        }
        let profile_dir = profile_dir();
        let target_dir = profile_dir.parent().expect("target dir");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cargo
            .current_dir(root())
            .args(["build", "--lib", "--quiet"]);
        cargo.env("CARGO_TARGET_DIR", target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cargo.arg("--release");
        }
        assert!(
            cargo.status().expect("run cargo build").success(),
            "cargo build --lib failed"
        );
        profile_dir.join("librest_client.so")
    })
    .clone()
}

/// Whether the module loaded is a debug build of this checkout, which reads the faults the
/// tests inject through the environment (`REST_CLIENT_TEST_*`); a release build, such as the
/// packaged one, has no such hooks.
#[allow(dead_code)] // tests/c_harness.rs only; the examples include this file too
pub fn module_has_test_hooks() -> bool {
    std::env::var_os(MODULE_ENV).is_none() && cfg!(debug_assertions)
}

/// Compiles `c_tests/<name>.c` alone into a shared library for `LD_PRELOAD`, once per run.
#[allow(dead_code)] // tests/c_harness.rs only; the examples include this file too
pub fn build_preload(name: &str) -> PathBuf {
    compile_once(name, |c, so| {
        Command::new("cc")
            .args([
                "-std=gnu11",
                "-O1",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-shared",
                "-fPIC",
            ])
            .arg(c.join(format!("{name}.c")))
            .arg("-o")
            .arg(so)
            .arg("-ldl")
            .status()
            .expect("run cc")
            .success()
    })
}

/// The C programs built with AddressSanitizer as well as UBSan (gcc's runtime, libasan, comes
/// with build-essential): their checks read memory that the module handed to the host and must
/// not have freed. The others do without: ASan must be the first library of a process, which
/// the `LD_PRELOAD` of `slow_dns` breaks, and it slows every allocation.
const ADDRESS_SANITIZED: &[&str] = &["test_transforms"];

/// Compiles `c_tests/<name>.c` with the harness (and `libs`, e.g. `-lcurl`), once per run
/// (tests run in parallel).
pub fn build(name: &str, libs: &[&str]) -> PathBuf {
    compile_once(name, |c, exe| {
        Command::new("cc")
            .args([
                "-std=gnu11",
                "-g",
                "-O1",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-rdynamic",
            ])
            .arg(if ADDRESS_SANITIZED.contains(&name) {
                "-fsanitize=address,undefined"
            } else {
                "-fsanitize=undefined"
            })
            .arg("-fno-sanitize-recover=undefined")
            .arg(c.join("harness.c"))
            .arg(c.join(format!("{name}.c")))
            .arg("-I")
            .arg(c)
            .arg("-I")
            .arg(root().join("include"))
            .arg("-o")
            .arg(exe)
            .args(["-ldl", "-lpthread"])
            .args(libs)
            .status()
            .expect("run cc")
            .success()
    })
}

/// Runs `compile(c_tests dir, output path)` for `name` the first time it is asked for in this
/// run (tests run in parallel), and returns the output path.
fn compile_once(name: &str, compile: impl FnOnce(&Path, &Path) -> bool) -> PathBuf {
    static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let out_dir = profile_dir().join("c_tests");
    let output = out_dir.join(name);
    if !built.iter().any(|n| n == name) {
        std::fs::create_dir_all(&out_dir).expect("create c_tests output dir");
        assert!(
            compile(&root().join("c_tests"), &output),
            "compiling {name}.c failed"
        );
        built.push(name.to_string());
    }
    output
}
