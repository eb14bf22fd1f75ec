//! The OpenSIPS cachedb API (`cachedb/cachedb.h`) as the shared store of a service's response
//! cache: bound like C modules bind it (`cachedb_bind_mod` in mod_init, the engine's `init`
//! in each process, never across `fork`), with the values `get` returns (package memory)
//! freed through the core's allocator.
#![allow(unsafe_code)]

use std::ffi::{CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use log::warn;

use crate::engine::SharedStore;

use super::abi::{Str, lookup, lookup_fn};
use super::cachedb_engines::{GetAnswer, GetCodes};

/// `cachedb_con`: `{ str url; void *data; }`, only passed back to the engine.
type Con = c_void;

type InitFn = unsafe extern "C" fn(*mut Str) -> *mut Con;
type GetFn = unsafe extern "C" fn(*mut Con, *mut Str, *mut Str) -> c_int;
type SetFn = unsafe extern "C" fn(*mut Con, *mut Str, *mut Str, c_int) -> c_int;
/// `add(con, attr, val, expires, &new_val)`: an atomic counter (redis INCRBY and EXPIRE).
type AddFn = unsafe extern "C" fn(*mut Con, *mut Str, c_int, c_int, *mut c_int) -> c_int;

/// `cachedb_funcs`: the leading members, which are the same in 3.4, 3.6 and 4.0. What follows
/// `sub` differs (3.6 added `iter_keys` after it: 184 bytes in 3.4, 192 in 3.6 and 4.0), so the
/// rest is room for the largest; the core writes its own size and only the leading members are
/// read.
#[repr(C)]
struct CachedbFuncs {
    init: Option<InitFn>,
    destroy: Option<unsafe extern "C" fn(*mut Con)>,
    get: Option<GetFn>,
    get_counter: *mut c_void,
    set: Option<SetFn>,
    remove: *mut c_void,
    remove_by_key: *mut c_void,
    add: Option<AddFn>,
    sub: *mut c_void,
    rest: [usize; 15],
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<CachedbFuncs>() == 192);
    assert!(offset_of!(CachedbFuncs, get) == 16);
    assert!(offset_of!(CachedbFuncs, set) == 32);
    assert!(offset_of!(CachedbFuncs, add) == 56);
    assert!(offset_of!(CachedbFuncs, sub) == 64);
};

type BindFn = unsafe extern "C" fn(*mut Str, *mut CachedbFuncs) -> c_int;

/// `gen_pkg_free`: the core's package-memory free function (its arguments depend on the
/// core's `DBG_MALLOC` flag, read from its compile flags at build time).
#[cfg(pkg_malloc_debug)]
type PkgFreeFn = unsafe extern "C" fn(*mut c_void, *mut c_void, *const c_char, *const c_char, u32);
#[cfg(not(pkg_malloc_debug))]
type PkgFreeFn = unsafe extern "C" fn(*mut c_void, *mut c_void);

/// The core's package allocator: where `gen_pkg_free` and `mem_block` live.
#[derive(Clone, Copy)]
struct PkgAllocator {
    free: *const Option<PkgFreeFn>,
    block: *const *mut c_void,
}

impl PkgAllocator {
    fn find() -> Option<Self> {
        let free = lookup(c"gen_pkg_free").cast::<Option<PkgFreeFn>>();
        let block = lookup(c"mem_block").cast::<*mut c_void>();
        (!free.is_null() && !block.is_null()).then_some(Self { free, block })
    }

    /// Frees `ptr`, allocated by the core's `pkg_malloc` in this process.
    fn free(&self, ptr: *mut c_void) {
        // SAFETY: `gen_pkg_free` and `mem_block` are the core's globals (the function and
        // the block of this process's package memory), read at each call as pkg_free does.
        unsafe {
            let Some(free) = *self.free else { return };
            #[cfg(pkg_malloc_debug)]
            free(
                *self.block,
                ptr,
                c"rest_client".as_ptr(),
                c"shared cache".as_ptr(),
                0,
            );
            #[cfg(not(pkg_malloc_debug))]
            free(*self.block, ptr);
        }
    }
}

/// A cachedb engine bound in mod_init, for one URL.
pub struct Cachedb {
    url: CString,
    codes: GetCodes,
    init: InitFn,
    get: GetFn,
    set: SetFn,
    /// NULL for an engine without counters (cachedb_local, cachedb_redis and
    /// cachedb_memcached have them): its fills are then not coordinated across instances.
    add: Option<AddFn>,
    pkg: PkgAllocator,
}

// SAFETY: the function pointers and the allocator's addresses are the core's and its
// modules', fixed for the life of the process; they are only called from a process's script
// thread, on that process's own connection.
unsafe impl Sync for Cachedb {}
unsafe impl Send for Cachedb {}

/// Least time between two attempts to open a process's connection.
const RECONNECT_INTERVAL: Duration = Duration::from_secs(5);

impl Cachedb {
    /// `cachedb_bind_mod(url)`: in mod_init, after the cachedb module's own (load it first).
    pub fn bind(url: &str) -> Result<Self, String> {
        let url = CString::new(url).map_err(|_| "a NUL byte in the cachedb URL".to_string())?;
        // SAFETY: `cachedb_bind_mod` is `int (str *, cachedb_funcs *)` in 3.4 – 4.0.
        let bind: BindFn = unsafe { lookup_fn(c"cachedb_bind_mod") }
            .ok_or("the core has no cachedb API (cachedb_bind_mod)")?;
        let pkg = PkgAllocator::find().ok_or(
            "this OpenSIPS build has no gen_pkg_free (a single inlined allocator), needed to \
             free cachedb values",
        )?;
        let mut funcs = CachedbFuncs {
            init: None,
            destroy: None,
            get: None,
            get_counter: std::ptr::null_mut(),
            set: None,
            remove: std::ptr::null_mut(),
            remove_by_key: std::ptr::null_mut(),
            add: None,
            sub: std::ptr::null_mut(),
            rest: [0; 15],
        };
        let mut url_str = str_of(url.as_bytes());
        // SAFETY: the URL is NUL-terminated and outlives the call; `funcs` has room for the
        // largest cachedb_funcs (the core copies its engine's whole table into it).
        if unsafe { bind(&mut url_str, &mut funcs) } < 0 {
            return Err(format!(
                "cannot bind the cachedb engine of {} (is its module loaded before rest_client?)",
                url.to_string_lossy()
            ));
        }
        match (funcs.init, funcs.get, funcs.set) {
            (Some(init), Some(get), Some(set)) => Ok(Self {
                codes: GetCodes::of_url(&url.to_string_lossy()),
                url,
                init,
                get,
                set,
                add: funcs.add,
                pkg,
            }),
            _ => Err(format!(
                "the cachedb engine of {} cannot get and set values",
                url.to_string_lossy()
            )),
        }
    }

    /// Whether its engine's `get` tells a missing key from a failure (see [`GetCodes`]).
    pub fn knows_missing(&self) -> bool {
        self.codes.knows_missing()
    }

    /// This process's connection (opened now, and again later while it cannot be).
    pub fn connect(&'static self) -> CachedbStore {
        let mut store = CachedbStore {
            db: self,
            con: None,
            next_attempt: Instant::now(),
        };
        if let Err(e) = store.connection() {
            warn!("{e}");
        }
        store
    }
}

fn str_of(bytes: &[u8]) -> Str {
    Str {
        s: bytes.as_ptr().cast_mut().cast::<c_char>(),
        len: c_int::try_from(bytes.len()).unwrap_or(c_int::MAX),
    }
}

/// A process's connection to a cachedb engine.
pub struct CachedbStore {
    db: &'static Cachedb,
    con: Option<NonNull<Con>>,
    next_attempt: Instant,
}

impl CachedbStore {
    fn connection(&mut self) -> Result<NonNull<Con>, String> {
        if let Some(con) = self.con {
            return Ok(con);
        }
        if Instant::now() < self.next_attempt {
            return Err("not connected".into());
        }
        self.next_attempt = Instant::now() + RECONNECT_INTERVAL;
        let mut url = str_of(self.db.url.as_bytes());
        // SAFETY: the engine's init with a NUL-terminated URL it copies; in the process that
        // uses the connection (never inherited through fork).
        let con = NonNull::new(unsafe { (self.db.init)(&mut url) }).ok_or_else(|| {
            format!(
                "cannot open a cachedb connection to {}",
                self.db.url.to_string_lossy()
            )
        })?;
        self.con = Some(con);
        Ok(con)
    }
}

impl SharedStore for CachedbStore {
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let con = self.connection()?;
        let mut attr = str_of(key.as_bytes());
        let mut value = Str {
            s: std::ptr::null_mut(),
            len: 0,
        };
        // SAFETY: the engine reads the key and sets `value` to package memory of this process
        // (or NULL), which is copied, then freed here as the API asks.
        let rc = unsafe { (self.db.get)(con.as_ptr(), &mut attr, &mut value) };
        let bytes = match usize::try_from(value.len) {
            Ok(len) if !value.s.is_null() => {
                // SAFETY: `len` bytes at `s`, owned by this call until freed just below.
                let bytes = unsafe { std::slice::from_raw_parts(value.s.cast::<u8>(), len) };
                Some(bytes.to_vec())
            }
            _ => None,
        };
        if !value.s.is_null() {
            self.db.pkg.free(value.s.cast());
        }
        match self.db.codes.read(rc) {
            GetAnswer::Found => Ok(Some(bytes.unwrap_or_default())),
            GetAnswer::Missing => Ok(None),
            GetAnswer::Failed => Err(format!("get returned {rc}")),
        }
    }

    fn set(&mut self, key: &str, value: &[u8], ttl_secs: u32) -> Result<(), String> {
        let con = self.connection()?;
        let mut attr = str_of(key.as_bytes());
        let mut val = str_of(value);
        let expires = c_int::try_from(ttl_secs).unwrap_or(c_int::MAX);
        // SAFETY: the engine reads both strings during the call (it copies what it keeps).
        match unsafe { (self.db.set)(con.as_ptr(), &mut attr, &mut val, expires) } {
            rc if rc < 0 => Err(format!("set returned {rc}")),
            _ => Ok(()),
        }
    }

    fn add(&mut self, key: &str, delta: i32, ttl_secs: u32) -> Result<Option<i64>, String> {
        let Some(add) = self.db.add else {
            return Ok(None);
        };
        let con = self.connection()?;
        let mut attr = str_of(key.as_bytes());
        let expires = c_int::try_from(ttl_secs).unwrap_or(c_int::MAX);
        let mut new_value: c_int = 0;
        // SAFETY: the engine reads the key during the call and writes the counter's new value
        // into `new_value`, which outlives the call.
        match unsafe { add(con.as_ptr(), &mut attr, delta, expires, &mut new_value) } {
            rc if rc < 0 => Err(format!("add returned {rc}")),
            _ => Ok(Some(i64::from(new_value))),
        }
    }
}
