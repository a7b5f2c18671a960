//! The routing snapshot requests read, and the reloader that swaps it.
//!
//! A snapshot is immutable; requests take an `Arc` to the current one at
//! their start, so a reload never changes a request mid-flight. Backends
//! whose configuration did not change are carried over with their pools.
//!
//! The modules, each using only those above it:
//! - [`backend`]: a backend's handle and the guard that bounds its calls;
//! - [`snapshot`]: building a snapshot from a loaded table;
//! - [`provision`]: creating a snapshot's tables in their backends;
//! - [`shared`]: the current snapshot and what reloads need, shared by
//!   a serving process's tasks;
//! - [`monitor`]: each backend's health monitor, and the expiry sweeper;
//! - [`reload`]: installing a new table (the previous one keeps serving on
//!   failure);
//! - [`watch`]: watching the source's files and reloading on change.

mod backend;
mod monitor;
mod provision;
mod reload;
mod shared;
mod snapshot;
mod watch;

pub use backend::BackendHandle;
pub use monitor::spawn_sweeper;
pub use provision::{ProvisionError, provision, provision_backend};
pub use reload::{ReloadError, install, reload};
pub use shared::Shared;
pub use snapshot::{BuildError, Serving, Snapshot, build_snapshot};
pub(crate) use watch::SUPERVISOR_BACKOFF;
pub use watch::spawn_reloader;
