//! The hybrid-online-store operator: one controller per custom resource,
//! thin reconcile functions over the pure planning code in [`plan`].

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod context;
pub mod controller;
pub mod error;
pub mod health;
pub mod leader;
pub mod leading;
pub mod metrics;
pub mod migrate;
pub mod plan;
pub mod readiness;
pub mod status;
pub mod store;
pub mod supervise;
pub mod verify;
pub mod view;

/// Finalizer both controllers put on their objects.
pub const FINALIZER: &str = "hybrid-online-store.io/finalizer";
/// Field manager for server-side apply and status patches.
pub const MANAGER: &str = "hos-operator";
