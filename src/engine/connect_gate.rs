//! `no_concurrent_connects` / `curl_conn_lifetime`: at most one process at a time connects to
//! a given host; the others get `AlreadyConnecting` (-4) instead of piling up on a dead backend.
//!
//! The gate keys on the URL's authority (`host:port`, lowercase, default port by scheme).
//! Entries record the owning pid, so a host held by a process that died is taken over.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::shared_table::{SharedTable, Slot};

/// The result of [`ConnectGate::enter`]: pass it back to [`ConnectGate::leave`].
#[derive(Debug, PartialEq, Eq)]
pub enum GateTicket {
    /// No lock was taken (the gate is off, or this process connected there recently).
    Unlocked,
    /// This process holds the host's slot.
    Locked { key: String, key_hash: u64 },
}

/// One process's view of the cross-process gate (cloned into each process after fork).
#[derive(Clone)]
pub struct ConnectGate {
    table: &'static SharedTable,
    /// `curl_conn_lifetime`: a connection this recent is trusted to be reusable.
    conn_lifetime: Duration,
    recent_connects: HashMap<String, Instant>,
}

impl ConnectGate {
    /// Maps the shared table: call before forking the processes that share it.
    pub fn create(conn_lifetime: Duration) -> Result<Self, String> {
        Ok(Self {
            table: SharedTable::map()?,
            conn_lifetime,
            recent_connects: HashMap::new(),
        })
    }

    /// Takes the host of `url`, or `None` when another live process holds it.
    pub fn enter(&mut self, url: &str) -> Option<GateTicket> {
        let key = host_key(url);
        if let Some(at) = self.recent_connects.get(&key)
            && at.elapsed() < self.conn_lifetime
        {
            return Some(GateTicket::Unlocked);
        }
        let key_hash = hash_key(&key);
        let me = std::process::id() as i32;
        let _lock = TableLock::acquire(self.table);
        let mut free: Option<&Slot> = None;
        for slot in &self.table.slots {
            let hash = slot.key_hash.load(Ordering::Relaxed);
            if hash == key_hash {
                let owner = slot.owner_pid.load(Ordering::Relaxed);
                if owner != me && process_alive(owner) {
                    return None;
                }
                slot.owner_pid.store(me, Ordering::Relaxed);
                return Some(GateTicket::Locked { key, key_hash });
            }
            if hash == 0 && free.is_none() {
                free = Some(slot);
            }
        }
        match free {
            Some(slot) => {
                slot.key_hash.store(key_hash, Ordering::Relaxed);
                slot.owner_pid.store(me, Ordering::Relaxed);
                Some(GateTicket::Locked { key, key_hash })
            }
            None => {
                log::warn!(
                    "no_concurrent_connects: {} hosts connecting at once, not gating {key}",
                    self.table.slots.len()
                );
                Some(GateTicket::Unlocked)
            }
        }
    }

    /// Releases the host taken by `enter`; a successful transfer starts the host's
    /// `curl_conn_lifetime` window in this process.
    pub fn leave(&mut self, ticket: GateTicket, succeeded: bool) {
        let GateTicket::Locked { key, key_hash } = ticket else {
            return;
        };
        {
            let _lock = TableLock::acquire(self.table);
            let me = std::process::id() as i32;
            if let Some(slot) = self.table.slots.iter().find(|s| {
                s.key_hash.load(Ordering::Relaxed) == key_hash
                    && s.owner_pid.load(Ordering::Relaxed) == me
            }) {
                slot.key_hash.store(0, Ordering::Relaxed);
                slot.owner_pid.store(0, Ordering::Relaxed);
            }
        }
        if succeeded && !self.conn_lifetime.is_zero() {
            self.recent_connects.insert(key, Instant::now());
        }
    }
}

/// Holds the table's spin lock; the critical sections are a scan of the slots, no syscall.
struct TableLock<'a>(&'a SharedTable);

impl<'a> TableLock<'a> {
    fn acquire(table: &'a SharedTable) -> Self {
        while table
            .lock
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::thread::yield_now();
        }
        Self(table)
    }
}

impl Drop for TableLock<'_> {
    fn drop(&mut self) {
        self.0.lock.store(0, Ordering::Release);
    }
}

fn process_alive(pid: i32) -> bool {
    pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// `host:port` of a URL, lowercase, with the scheme's default port when none is given.
fn host_key(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match host_port.rfind(':') {
        Some(colon) => !host_port[colon..].contains(']'),
        None => false,
    };
    let mut key = host_port.to_ascii_lowercase();
    if !has_port {
        key.push_str(if scheme.eq_ignore_ascii_case("https") {
            ":443"
        } else {
            ":80"
        });
    }
    key
}

fn hash_key(key: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    hasher.write(key.as_bytes());
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_ignores_path_userinfo_and_case() {
        assert_eq!(host_key("http://u:p@Example.COM/a:b?c"), "example.com:80");
        assert_eq!(host_key("https://h:8443/x"), "h:8443");
        assert_eq!(host_key("https://[::1]/x"), "[::1]:443");
        assert_eq!(host_key("http://[::1]:81"), "[::1]:81");
    }

    #[test]
    fn second_holder_is_refused_until_release() {
        let mut gate = ConnectGate::create(Duration::ZERO).unwrap();
        let ticket = gate.enter("http://a:1/x").unwrap();
        // Same process re-entering (e.g. after a crash-free reuse) is allowed; another pid is
        // simulated by rewriting the owner to a live process (pid 1).
        let slot = gate
            .table
            .slots
            .iter()
            .find(|s| s.key_hash.load(Ordering::Relaxed) != 0);
        slot.unwrap().owner_pid.store(1, Ordering::Relaxed);
        assert_eq!(gate.enter("http://a:1/other"), None);
        slot.unwrap()
            .owner_pid
            .store(std::process::id() as i32, Ordering::Relaxed);
        gate.leave(ticket, true);
        assert!(matches!(
            gate.enter("http://a:1/"),
            Some(GateTicket::Locked { .. })
        ));
    }

    #[test]
    fn recent_success_skips_the_lock() {
        let mut gate = ConnectGate::create(Duration::from_secs(60)).unwrap();
        let ticket = gate.enter("http://b:1/").unwrap();
        gate.leave(ticket, true);
        assert_eq!(gate.enter("http://b:1/"), Some(GateTicket::Unlocked));
    }
}
