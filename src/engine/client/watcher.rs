//! The one descriptor a process's async transfers hand to the host's reactor: an epoll
//! instance that holds the transfers' sockets (with the directions libcurl waits for) and a
//! timerfd armed to libcurl's next timeout. It is readable exactly when libcurl has work to do,
//! so a reactor that only watches read readiness drives every transfer (connect, TLS
//! handshake, upload, response, libcurl's own timers) without the worker ever waiting, and the
//! descriptor stays the same whatever sockets libcurl opens and closes.
//!
//! This file's unsafe code is the epoll/timerfd system calls on descriptors it owns.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// What libcurl waits for on one socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

pub struct Watcher {
    epoll: OwnedFd,
    timer: OwnedFd,
    watched: HashMap<RawFd, Interest>,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Watcher {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain descriptor-creating calls; each result is checked and then owned.
        let (epoll, timer) = unsafe {
            let epoll = OwnedFd::from_raw_fd(check(libc::epoll_create1(libc::EPOLL_CLOEXEC))?);
            let timer = OwnedFd::from_raw_fd(check(libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            ))?);
            (epoll, timer)
        };
        let watcher = Self {
            epoll,
            timer,
            watched: HashMap::new(),
        };
        watcher.ctl(
            libc::EPOLL_CTL_ADD,
            watcher.timer.as_raw_fd(),
            libc::EPOLLIN as u32,
        )?;
        Ok(watcher)
    }

    /// The descriptor to hand to the reactor.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events,
            u64: fd as u64,
        };
        // SAFETY: both descriptors are open (ours, and a socket libcurl just reported).
        check(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) }).map(drop)
    }

    /// Follows libcurl's socket callback: `None` = stop watching `socket`.
    pub fn watch(&mut self, socket: RawFd, interest: Option<Interest>) -> io::Result<()> {
        match interest {
            None => {
                if self.watched.remove(&socket).is_some() {
                    // The socket may already be closed (then epoll dropped it by itself).
                    let _ = self.ctl(libc::EPOLL_CTL_DEL, socket, 0);
                }
                Ok(())
            }
            Some(interest) => {
                let mut events = 0;
                if interest.read {
                    events |= libc::EPOLLIN as u32;
                }
                if interest.write {
                    events |= libc::EPOLLOUT as u32;
                }
                let op = if self.watched.insert(socket, interest).is_some() {
                    libc::EPOLL_CTL_MOD
                } else {
                    libc::EPOLL_CTL_ADD
                };
                self.ctl(op, socket, events)
                    .or_else(|e| match e.raw_os_error() {
                        // A descriptor number reused after libcurl closed the old socket.
                        Some(libc::ENOENT) => self.ctl(libc::EPOLL_CTL_ADD, socket, events),
                        Some(libc::EEXIST) => self.ctl(libc::EPOLL_CTL_MOD, socket, events),
                        _ => Err(e),
                    })
            }
        }
    }

    /// Arms the timer for libcurl's next timeout (`None` disarms it). A zero delay fires at once.
    pub fn arm_timer(&self, after: Option<Duration>) -> io::Result<()> {
        let after = after.map(|d| d.max(Duration::from_nanos(1)));
        let value = after.map_or(
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            |d| libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        );
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        // SAFETY: `timer` is our timerfd; `spec` is a valid itimerspec.
        check(unsafe {
            libc::timerfd_settime(self.timer.as_raw_fd(), 0, &spec, std::ptr::null_mut())
        })
        .map(drop)
    }

    /// Consumes an expiry of the timer, so the epoll descriptor stops being readable for it.
    fn clear_timer(&self) {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a local from our non-blocking timerfd.
        unsafe {
            libc::read(self.timer.as_raw_fd(), (&raw mut expirations).cast(), 8);
        }
    }

    /// What is ready now, without waiting: the sockets with their ready directions (errors
    /// and hang-ups count as readable), and whether the timer expired (the expiry is consumed).
    pub fn ready(&self) -> io::Result<(Vec<(RawFd, Interest)>, bool)> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: `events` is a writable array of the length passed.
        let n = check(unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                0,
            )
        })?;
        let mut sockets = Vec::with_capacity(n as usize);
        let mut timer_expired = false;
        for event in &events[..n as usize] {
            let fd = event.u64 as RawFd;
            if fd == self.timer.as_raw_fd() {
                self.clear_timer();
                timer_expired = true;
            } else {
                let bits = event.events;
                let read = bits & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
                let write = bits & libc::EPOLLOUT as u32 != 0;
                sockets.push((fd, Interest { read, write }));
            }
        }
        Ok((sockets, timer_expired))
    }

    /// Waits up to `timeout` for the descriptor to become readable; true if it is.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.epoll.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
    }
}
