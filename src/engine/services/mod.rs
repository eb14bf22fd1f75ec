//! Named services (`name://path`): their definitions, the credentials renewed at run time, and
//! their response caches (per process, optionally shared through the host's key-value store),
//! with the `Cache-Control` and stale rules that decide what is kept and served, the shared
//! level used as an upstream (bounded, skipped after a failure), who fetches an answer that
//! several processes or instances miss at once, and the rules between a service's base URLs
//! (`upstreams`).

mod cache_control;
mod credentials;
mod fill;
mod registry;
mod response_cache;
mod service;
mod service_cache;
mod shared_guard;
mod stale;
mod upstreams;

pub use credentials::RenewedServices;
pub use fill::{Claim, FILL_POLL_INTERVAL};
pub use registry::{ServiceCounter, ServiceRegistry};
pub use response_cache::ResponseCache;
pub use service::{Service, service_reference};
pub use service_cache::{Pending, ServiceCache};
pub use shared_guard::SharedStore;
pub use upstreams::{Balance, rebase};
