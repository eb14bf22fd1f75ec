//! Build script: stamps the module for one target OpenSIPS and regenerates the C header.
//!
//! The OpenSIPS core refuses (and exits) when a module's version string, compile-flag string or
//! source-control type differ from its own, and the `async_ctx` and `sip_msg` layouts differ
//! between releases, so all of these are chosen here, at build time, from (first match wins):
//! 1. `OPENSIPS_BIN`: the `opensips` binary of the target; its `opensips -V` is parsed;
//! 2. `OPENSIPS_VERSION` (e.g. `3.4.18`), `OPENSIPS_COMPILE_FLAGS`, `OPENSIPS_SCM_TYPE`,
//!    `OPENSIPS_SCM_REV`;
//! 3. a default build of OpenSIPS 3.6.8.
//!
//! An unsupported or unparsable version stops the build with a message saying what to set.

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const DEFAULT_VERSION: &str = "3.6.8";
/// Flags of a default `make` of 3.6.x / 4.0.x (`opensips -V`, line `flags:`).
const DEFAULT_FLAGS_3_6: &str = "STATS: On, DISABLE_NAGLE, USE_MCAST, SHM_MMAP, PKG_MALLOC, Q_MALLOC, \
F_MALLOC, HP_MALLOC, F_PARALLEL_MALLOC, DBG_MALLOC, FAST_LOCK-ADAPTIVE_WAIT";
/// 3.4 has no F_PARALLEL_MALLOC allocator.
const DEFAULT_FLAGS_3_4: &str = "STATS: On, DISABLE_NAGLE, USE_MCAST, SHM_MMAP, PKG_MALLOC, Q_MALLOC, \
F_MALLOC, HP_MALLOC, DBG_MALLOC, FAST_LOCK-ADAPTIVE_WAIT";

struct Target {
    version: String,
    compile_flags: Option<String>,
    scm_type: Option<String>,
    scm_rev: Option<String>,
}

fn main() {
    for var in [
        "OPENSIPS_BIN",
        "OPENSIPS_VERSION",
        "OPENSIPS_COMPILE_FLAGS",
        "OPENSIPS_SCM_TYPE",
        "OPENSIPS_SCM_REV",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/capi.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo::rustc-check-cfg=cfg(async_ctx, values(\"v3_4_0\", \"v3_4_3\", \"v4_0\"))");
    println!("cargo::rustc-check-cfg=cfg(sip_msg, values(\"v3_4\", \"v3_6\"))");
    println!("cargo::rustc-check-cfg=cfg(mi_export, values(\"v3\", \"v4\"))");
    println!("cargo::rustc-check-cfg=cfg(pkg_malloc_debug)");

    let target = match env::var("OPENSIPS_BIN") {
        Ok(bin) if !bin.is_empty() => target_from_binary(&bin),
        _ => target_from_env(),
    };
    let (major, minor, patch) = parse_version(&target.version);
    let layout = match (major, minor, patch) {
        (3, 4, 0..=2) => "v3_4_0",
        (3, 4, _) | (3, 6, _) => "v3_4_3",
        (4, 0, _) => "v4_0",
        _ => fail(&format!(
            "OpenSIPS {} is not supported: this module targets 3.4.x, 3.6.x and 4.0.x",
            target.version
        )),
    };
    // Releases that compare the source revision exactly need the core's revision.
    let exact_rev = matches!((major, minor, patch), (3, 4, 0..=15) | (3, 6, 0..=2));
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_else(|_| "linux".into());
    let flags = target.compile_flags.unwrap_or_else(|| {
        if (major, minor) == (3, 4) {
            DEFAULT_FLAGS_3_4
        } else {
            DEFAULT_FLAGS_3_6
        }
        .to_string()
    });
    let scm_type = target.scm_type.unwrap_or_else(|| "git".into());
    let scm_rev = target.scm_rev.unwrap_or_default();
    if exact_rev && scm_rev.is_empty() {
        println!(
            "cargo:warning=OpenSIPS {} compares the source revision exactly: set OPENSIPS_BIN or \
             OPENSIPS_SCM_REV, or rely on the load-time copy of the core's revision",
            target.version
        );
    }

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let stamp = format!(
        "/// `ver_info.version`: must equal the core's `NAME VERSION (ARCH/OS)`.\n\
         pub const VERSION: &std::ffi::CStr = c{:?};\n\
         /// `ver_info.compile_flags`: must equal the core's `flags:` line.\n\
         pub const COMPILE_FLAGS: &std::ffi::CStr = c{:?};\n\
         /// `ver_info.scm.type` used when the core does not publish `core_scm_ver`.\n\
         pub const SCM_TYPE: &std::ffi::CStr = c{:?};\n\
         /// `ver_info.scm.rev` used when the core does not publish `core_scm_ver`.\n\
         pub const SCM_REV: &std::ffi::CStr = c{:?};\n",
        format!("opensips {} ({arch}/{os})", target.version),
        flags,
        scm_type,
        scm_rev
    );
    fs::write(out.join("opensips_target.rs"), stamp).expect("write opensips_target.rs");
    println!("cargo:rustc-cfg=async_ctx=\"{layout}\"");
    // 3.4's `struct sip_msg` has an `h_via2` pointer before `callid`; 3.6 and 4.0 do not.
    let sip_msg = if (major, minor) == (3, 4) {
        "v3_4"
    } else {
        "v3_6"
    };
    println!("cargo:rustc-cfg=sip_msg=\"{sip_msg}\"");
    // 4.0's `mi_export_t` has 20 parameters per recipe (10 before) and command aliases.
    let mi_export = if major >= 4 { "v4" } else { "v3" };
    println!("cargo:rustc-cfg=mi_export=\"{mi_export}\"");
    // With DBG_MALLOC the core's pkg_free takes the caller's file, function and line too.
    if flags.split(',').any(|flag| flag.trim() == "DBG_MALLOC") {
        println!("cargo:rustc-cfg=pkg_malloc_debug");
    }

    generate_header();
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    eprintln!(
        "hint: build for your OpenSIPS with OPENSIPS_BIN=/path/to/opensips cargo build --release, \
         or set OPENSIPS_VERSION and OPENSIPS_COMPILE_FLAGS (see README)"
    );
    std::process::exit(1);
}

fn target_from_env() -> Target {
    let nonempty = |name: &str| env::var(name).ok().filter(|v| !v.is_empty());
    Target {
        version: nonempty("OPENSIPS_VERSION").unwrap_or_else(|| DEFAULT_VERSION.into()),
        compile_flags: nonempty("OPENSIPS_COMPILE_FLAGS"),
        scm_type: nonempty("OPENSIPS_SCM_TYPE"),
        scm_rev: env::var("OPENSIPS_SCM_REV").ok(),
    }
}

/// Parses `opensips -V`:
/// `version: opensips 3.6.8 (x86_64/linux)`, `flags: ...`, `git revision: f9f85260e5`.
fn target_from_binary(bin: &str) -> Target {
    println!("cargo:rerun-if-changed={bin}");
    let output = Command::new(bin)
        .arg("-V")
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run OPENSIPS_BIN={bin} -V: {e}")));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let mut target = Target {
        version: String::new(),
        compile_flags: None,
        scm_type: None,
        scm_rev: None,
    };
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("version: ") {
            let v = v.strip_prefix("opensips ").unwrap_or(v);
            target.version = v.split_whitespace().next().unwrap_or("").to_string();
        } else if let Some(f) = line.strip_prefix("flags: ") {
            target.compile_flags = Some(f.trim_end().to_string());
        } else if let Some((scm, rev)) = line.split_once(" revision: ") {
            target.scm_type = Some(scm.trim().to_string());
            target.scm_rev = Some(rev.trim().to_string());
        }
    }
    if target.version.is_empty() || target.compile_flags.is_none() {
        fail(&format!(
            "`{bin} -V` printed no `version:`/`flags:` lines:\n{text}"
        ));
    }
    target
}

fn parse_version(version: &str) -> (u32, u32, u32) {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(str::parse::<u32>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => (a, b, c),
        _ => fail(&format!(
            "cannot parse OpenSIPS version {version:?} (expected e.g. 3.6.8)"
        )),
    }
}

/// Regenerates `include/rest_client.h` from the host-neutral C API (`src/capi.rs`).
fn generate_header() {
    let crate_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("read cbindgen.toml");
    match cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/capi.rs"))
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(crate_dir.join("include/rest_client.h"));
        }
        Err(e) => println!("cargo:warning=cbindgen could not generate the header: {e}"),
    }
}
