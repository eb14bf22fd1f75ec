//! The host's named services and what every process shares about them: the credentials
//! renewed at run time, the counters the host reports (calls, cache hits, cache flushes
//! asked), the fill marks of the shared caches and the health of their upstreams. Made once
//! at startup, before the workers fork.

use super::credentials::{RenewableCredentials, RenewedServices};
use super::service::Service;
use crate::engine::shared::{FillMarks, ServiceHealth, SharedCounters, UpstreamHealth};

/// The counters each named service has, summed over every process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceCounter {
    /// Calls to the service (answered from its cache or not).
    Calls,
    CacheHits,
    /// Flushes of its cache asked by the host (MI): each process drops its copies at its next
    /// call to the service when this differs from the count it last saw.
    CacheFlushes,
}

impl ServiceCounter {
    const PER_SERVICE: usize = 3;
}

pub struct ServiceRegistry {
    services: Vec<Service>,
    credentials: RenewableCredentials,
    counters: SharedCounters,
    /// Which process fetches which answer of a shared cache (with a service that has one).
    fill_marks: Option<FillMarks>,
    health: UpstreamHealth,
}

impl ServiceRegistry {
    /// Maps the shared state of `services`: call before forking the processes that share it.
    pub fn new(services: Vec<Service>) -> Result<Self, String> {
        Ok(Self {
            credentials: RenewableCredentials::create(services.len())?,
            counters: SharedCounters::map(services.len() * ServiceCounter::PER_SERVICE)?,
            fill_marks: services
                .iter()
                .any(|s| s.shared_cache.is_some())
                .then(FillMarks::create)
                .transpose()?,
            health: UpstreamHealth::map(
                &services
                    .iter()
                    .map(|s| 1 + s.upstreams.alternates.len())
                    .collect::<Vec<_>>(),
            )?,
            services,
        })
    }

    /// The definitions, by position.
    pub fn definitions(&self) -> &[Service] {
        &self.services
    }

    /// The fill marks of the shared caches (none without a service that has one).
    pub fn fill_marks(&self) -> Option<FillMarks> {
        self.fill_marks
    }

    /// The service named `name` (any case) and its position.
    pub fn find(&self, name: &str) -> Option<(usize, &Service)> {
        self.services
            .iter()
            .enumerate()
            .find(|(_, s)| s.name.eq_ignore_ascii_case(name))
    }

    /// Adds one to `counter` of service `index`.
    pub fn count(&self, index: usize, counter: ServiceCounter) {
        self.counters
            .add(index * ServiceCounter::PER_SERVICE + counter as usize, 1);
    }

    pub fn read(&self, index: usize, counter: ServiceCounter) -> u64 {
        self.counters
            .get(index * ServiceCounter::PER_SERVICE + counter as usize)
    }

    /// The health of every service's upstreams (for its clock).
    pub fn health(&self) -> &UpstreamHealth {
        &self.health
    }

    /// The health of service `index`'s upstreams.
    pub fn service_health(&self, index: usize) -> Option<ServiceHealth<'static>> {
        self.health.service(index)
    }

    /// How many credential updates service `index` has had.
    pub fn credential_updates(&self, index: usize) -> u64 {
        self.credentials.updates(index)
    }

    /// Checks `update` against service `index` and publishes it for every process; returns
    /// how many updates the service has had. The error never quotes a value.
    pub fn publish_update(&self, index: usize, update: &str) -> Result<u64, String> {
        let definition = self.services.get(index).ok_or("no such service")?;
        self.credentials.publish(index, definition, update)
    }

    /// Asks every process to drop its cached answers of the service named `name` at its next
    /// call to it (and the shared store's); returns the service's name. `Err` for an unknown
    /// service or one without a cache.
    pub fn ask_flush(&self, name: &str) -> Result<&str, String> {
        let (index, service) = self
            .find(name)
            .ok_or_else(|| format!("unknown service '{name}'"))?;
        if service.cache.is_none() {
            return Err(format!("service {} has no cache", service.name));
        }
        self.count(index, ServiceCounter::CacheFlushes);
        Ok(&service.name)
    }

    /// Service `index` as it is now (its definition with the latest published update), through
    /// a process's copies in `renewed`.
    pub fn current<'a>(&'a self, renewed: &'a mut RenewedServices, index: usize) -> &'a Service {
        renewed.current(&self.credentials, index, &self.services[index])
    }
}
