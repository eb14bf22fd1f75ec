//! The state of one worker process, created in child_init (or at its first call): the
//! engine's call pipeline with the process's client and connection caches, the state of the SIP
//! message being processed, and the async calls waiting to be resumed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::mem::ManuallyDrop;

use crate::engine::{Calls, SharedStore, Token};

use super::async_call::AsyncCall;
use super::message::MessageScope;
use super::module::config;
use super::stats::STATS_OBSERVER;

/// The state of one worker process.
pub struct Worker {
    pid: u32,
    pub calls: Calls,
    /// The state of the SIP message being processed: settings for its next transfer, the
    /// response head its route can read.
    pub message: MessageScope,
    /// Async calls started and not yet resumed, by transfer token.
    pub async_calls: HashMap<Token, AsyncCall>,
    /// The token of the last async transfer started.
    pub last_token: Token,
    /// Whether the core's reactor watches this process's async transfers (registered at the
    /// first async call: the reactor does not exist yet in child_init).
    pub hub_registered: bool,
}

thread_local! {
    /// The worker state of this process. OpenSIPS runs scripts in one thread per process; the
    /// state is never shared across threads (libcurl handles are not `Send`), and never
    /// dropped at exit (a forked child may still hold its parent's copy).
    static WORKER: ManuallyDrop<RefCell<Option<Worker>>> =
        const { ManuallyDrop::new(RefCell::new(None)) };
}

fn new_worker() -> Result<Worker, String> {
    let config = config().ok_or("the module is not initialised (mod_init did not run)")?;
    // A connection of this process to the store of each shared cache (`cachedb_bind_mod` ran
    // in mod_init).
    let shared_store = |service: &crate::engine::Service| {
        config
            .shared_caches
            .get(&service.name)
            .map(|cachedb| Box::new(cachedb.connect()) as Box<dyn SharedStore>)
    };
    Ok(Worker {
        pid: std::process::id(),
        calls: Calls::new(
            config.settings.clone(),
            config.gate.clone(),
            &config.services,
            shared_store,
            &STATS_OBSERVER,
        )?,
        message: MessageScope::default(),
        async_calls: HashMap::new(),
        last_token: 0,
        hub_registered: false,
    })
}

/// Runs `f` on this process's worker state, creating it if this process has none yet.
/// State inherited through `fork()` belongs to the parent: it is forgotten, never used or
/// freed (its sockets are the parent's).
pub fn with_worker<R>(f: impl FnOnce(&mut Worker) -> R) -> Result<R, String> {
    WORKER.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| "the worker state is already in use (re-entrant call)".to_string())?;
        if slot.as_ref().is_some_and(|w| w.pid != std::process::id()) {
            std::mem::forget(slot.take());
        }
        if slot.is_none() {
            *slot = Some(new_worker()?);
        }
        Ok(f(slot.as_mut().expect("worker just created")))
    })
}
