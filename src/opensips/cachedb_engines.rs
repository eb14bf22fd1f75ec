//! What the `get` of each OpenSIPS cachedb engine returns (`modules/cachedb_*` of OpenSIPS 3.4
//! to 4.0). Every engine answers 0 or more for a value found, but they tell a missing key from
//! a failed read differently, and some not at all. A missing key must never be read where the
//! store failed: a missing invalidation marker means "no write since", so a shared cache that
//! took a failed read of a marker for a missing one would serve an answer stored before a write.

use std::ffi::c_int;

/// What a cachedb `get` answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetAnswer {
    Found,
    Missing,
    Failed,
}

/// The code of `get` for a missing key, by engine (named as in the URL, `redis://...`), for the
/// engines that give it for nothing else:
/// - cachedb_local: 1 found, -2 missing, -1 error;
/// - cachedb_redis: 0 found, -2 missing, -1 error (-10: a cluster node it cannot reach);
/// - cachedb_memcached: 0 found, -2 missing, -1 error;
/// - cachedb_couchbase: 1 found, -1 missing, -2 error (a failed reconnect, or no memory);
/// - cachedb_cassandra: 0 found, -2 missing, -1 error;
/// - cachedb_sql: 1 found, -2 missing (or a NULL value), -1 error.
///
/// Not listed, so every negative code is a failure: cachedb_mongodb (-2 for a missing key and
/// for a query that failed, whose cursor error it does not read), cachedb_dynamodb (-2 for a
/// missing key and when package memory runs out), and any other engine.
const MISS_CODES: [(&str, c_int); 6] = [
    ("local", -2),
    ("redis", -2),
    ("memcached", -2),
    ("couchbase", -1),
    ("cassandra", -2),
    ("sql", -2),
];

/// How to read the `get` codes of the engine of one cachedb URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetCodes {
    missing: Option<c_int>,
}

impl GetCodes {
    /// For `url`'s engine: the text before its first `:`, as `cachedb_bind_mod` picks it.
    pub fn of_url(url: &str) -> Self {
        let engine = url.split(':').next().unwrap_or_default();
        Self {
            missing: MISS_CODES
                .iter()
                .find(|(name, _)| *name == engine)
                .map(|&(_, code)| code),
        }
    }

    /// Whether the engine tells a missing key from a failure.
    pub fn knows_missing(self) -> bool {
        self.missing.is_some()
    }

    pub fn read(self, rc: c_int) -> GetAnswer {
        match rc {
            0.. => GetAnswer::Found,
            rc if Some(rc) == self.missing => GetAnswer::Missing,
            _ => GetAnswer::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_a_miss_only_where_the_engine_gives_it_for_nothing_else() {
        use GetAnswer::*;
        for (url, found, missing, failed) in [
            ("local://", [1].as_slice(), [-2].as_slice(), [-1].as_slice()),
            ("redis://127.0.0.1:6379/", &[0], &[-2], &[-1, -10]),
            ("redis:group1://h/", &[0], &[-2], &[-1]),
            ("memcached://h:11211/", &[0], &[-2], &[-1]),
            ("couchbase://h/b", &[1], &[-1], &[-2]),
            ("cassandra://h/ks.t", &[0], &[-2], &[-1]),
            ("sql:mysql://h/db", &[1], &[-2], &[-1]),
            ("mongodb://h/db.c", &[0], &[], &[-1, -2]),
            ("dynamodb://h/t", &[0], &[], &[-1, -2]),
            ("other://h", &[0, 1], &[], &[-1, -2]),
        ] {
            let codes = GetCodes::of_url(url);
            assert_eq!(codes.knows_missing(), !missing.is_empty(), "{url}");
            for (rcs, answer) in [(found, Found), (missing, Missing), (failed, Failed)] {
                for &rc in rcs {
                    assert_eq!(codes.read(rc), answer, "{url} {rc}");
                }
            }
        }
    }
}
