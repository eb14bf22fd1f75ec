//! Credentials of named services renewed while the host runs (a JWT that expires, a token from a
//! login call): any process publishes an update in shared memory, and every process applies it
//! at its next call to the service. An update holds `auth` and `header` items in the syntax of
//! a service definition (see [`Service::with_update`]); a new update replaces the previous one.

use std::collections::HashMap;

use log::error;

use super::service::Service;
use crate::engine::shared::{SHARED_TEXT_BYTES, SharedTexts};

/// The published updates, one per service (by its position in the host's list), in shared
/// memory mapped before the worker processes start.
pub struct RenewableCredentials {
    updates: SharedTexts,
}

impl RenewableCredentials {
    pub fn create(service_count: usize) -> Result<Self, String> {
        Ok(Self {
            updates: SharedTexts::map(service_count)?,
        })
    }

    /// How many updates service `index` has had.
    pub fn updates(&self, index: usize) -> u64 {
        self.updates.generation(index)
    }

    /// Checks `update` against the definition of service `index` and publishes it for every
    /// process; returns how many updates the service has had. The error never quotes a value.
    pub fn publish(&self, index: usize, definition: &Service, update: &str) -> Result<u64, String> {
        definition.with_update(update)?;
        self.updates.write(index, update.as_bytes())
    }
}

/// One process's copies of the services whose credentials were renewed, each with the update
/// count it was built from.
#[derive(Default)]
pub struct RenewedServices {
    seen: HashMap<usize, (u64, Service)>,
}

impl RenewedServices {
    /// Service `index` as it is now: its definition, with the latest published update.
    pub fn current<'a>(
        &'a mut self,
        shared: &RenewableCredentials,
        index: usize,
        definition: &'a Service,
    ) -> &'a Service {
        let generation = shared.updates.generation(index);
        if generation == 0 {
            return definition;
        }
        if self
            .seen
            .get(&index)
            .is_none_or(|(seen, _)| *seen != generation)
        {
            let mut buffer = Box::new([0u8; SHARED_TEXT_BYTES]);
            let (generation, update) = shared.updates.read(index, &mut buffer);
            let renewed = std::str::from_utf8(update)
                .map_err(|_| "not UTF-8".to_string())
                .and_then(|update| definition.with_update(update))
                .unwrap_or_else(|e| {
                    // Checked when published: only a bug gets here.
                    error!(
                        "service {}: cannot apply its renewed credentials: {e}",
                        definition.name
                    );
                    definition.clone()
                });
            self.seen.insert(index, (generation, renewed));
        }
        &self.seen[&index].1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::request::Auth;

    #[test]
    fn an_update_reaches_every_view_and_replaces_the_previous_one() {
        let definition = Service::parse(
            "name=api; url=http://h/; auth=bearer:old; header=X-Key: a; header=X-Team: 7",
        )
        .unwrap();
        let shared = RenewableCredentials::create(1).unwrap();
        let (mut mine, mut theirs) = (RenewedServices::default(), RenewedServices::default());
        assert!(
            matches!(&mine.current(&shared, 0, &definition).auth, Some(Auth::Bearer(t)) if t == "old")
        );
        assert_eq!(
            shared
                .publish(0, &definition, "auth=bearer:new; header=x-key: b")
                .unwrap(),
            1
        );
        let renewed = theirs.current(&shared, 0, &definition);
        assert!(matches!(&renewed.auth, Some(Auth::Bearer(t)) if t == "new"));
        assert_eq!(renewed.headers, ["X-Team: 7", "x-key: b"]);
        shared.publish(0, &definition, "header=X-Key: c").unwrap();
        let renewed = mine.current(&shared, 0, &definition);
        assert!(matches!(&renewed.auth, Some(Auth::Bearer(t)) if t == "old"));
        assert_eq!(renewed.headers, ["X-Team: 7", "X-Key: c"]);
    }

    #[test]
    fn bad_updates_are_refused_without_quoting_them() {
        let definition = Service::parse("name=api; url=http://h/").unwrap();
        let shared = RenewableCredentials::create(1).unwrap();
        for (update, error) in [
            ("auth=token:s3cret", "auth must be"),
            ("header=X-A: s3cret\r\nX-B: 1", "header must be"),
            ("url=http://other/", "only auth and header"),
            ("s3cret", "not key=value"),
        ] {
            let e = shared.publish(0, &definition, update).unwrap_err();
            assert!(e.contains(error) && !e.contains("s3cret"), "{update}: {e}");
        }
        let long = format!("auth=bearer:{}", "t".repeat(SHARED_TEXT_BYTES));
        assert!(shared.publish(0, &definition, &long).is_err());
        assert!(shared.publish(1, &definition, "auth=bearer:x").is_err());
        assert_eq!(shared.updates.generation(0), 0);
    }
}
