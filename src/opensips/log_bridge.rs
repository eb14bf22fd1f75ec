//! Routes the `log` crate's records to the core's `dprint`, honouring the core's current
//! `*log_level` at every call. Without a core (unit tests) lines go to stderr. Every line is
//! passed through [`loggable`], so text from scripts, servers or configuration cannot start a
//! log line of its own.

use std::ffi::CString;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::engine::loggable;

use super::abi::{core_log, core_log_level};

struct CoreLogger;

/// OpenSIPS level number and label of a `log` level.
fn core_level(level: Level) -> (i32, &'static str) {
    match level {
        Level::Error => (-1, "ERROR"),
        Level::Warn => (1, "WARNING"),
        Level::Info => (3, "INFO"),
        Level::Debug | Level::Trace => (4, "DBG"),
    }
}

impl Log for CoreLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        let (level, _) = core_level(metadata.level());
        core_log_level().map_or(metadata.level() <= Level::Warn, |current| current >= level)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (level, label) = core_level(record.level());
        let func = record.target().rsplit("::").next().unwrap_or("rest_client");
        let func = CString::new(func).unwrap_or_default();
        let message = record.args().to_string();
        let message = loggable(&message);
        if !core_log(level, label, &func, &message) {
            eprintln!("{label}:rest_client:{}: {message}", func.to_string_lossy());
        }
    }

    fn flush(&self) {}
}

/// Installs the bridge (once per process image; later calls are no-ops).
pub fn install() {
    static LOGGER: CoreLogger = CoreLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}
