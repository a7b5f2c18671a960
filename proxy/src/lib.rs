//! The hybrid-online-store proxy: Feast's feature-server API in front of
//! routed online store backends, with hot-reloaded routing.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod access;
pub mod auth;
pub mod config;
pub mod configmap;
pub mod error;
pub mod features;
pub mod grpc;
pub mod guard;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod plan;
pub mod registry;
pub mod response;
pub mod server;
pub mod state;
pub mod trace;
pub mod view_metrics;
pub mod write;
