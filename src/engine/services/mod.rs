//! Named services (`name://path`): their definitions, the credentials renewed at run time, and
//! their response caches (per process, optionally shared through the host's key-value store),
//! with the `Cache-Control` rules that decide what is kept, and the rules between a service's
//! base URLs (`upstreams`).

mod cache_control;
mod credentials;
mod registry;
mod response_cache;
mod service;
mod service_cache;
mod upstreams;

pub use credentials::RenewedServices;
pub use registry::{ServiceCounter, ServiceRegistry};
pub use response_cache::ResponseCache;
pub use service::{Service, service_reference};
pub use service_cache::{Pending, ServiceCache, SharedStore};
pub use upstreams::{Balance, rebase};
