//! Types shared by the proxy and the operator of hybrid-online-store. No I/O
//! happens here: callers read files and environment variables and hand the
//! contents in, so every rule is testable as a pure function.
//!
//! - [`proto`]: Feast's protobuf messages (Value, EntityKey, ServingService).
//! - [`dtype`]: Feast feature dtypes and their value types.
//! - [`entity_key`]: Feast's entity key serialization (v3 and legacy v2).
//! - [`keys`]: the backend keys Feast derives from a serialized entity key.
//! - [`feast_config`]: `feature_store.yaml` parsing, hybrid store included.
//! - [`feature_view`]: FeatureView definitions in YAML.
//! - [`routing`]: the routing rule and the routing table document.
//! - [`yaml`]: reading and writing YAML (serde-saphyr with the options every
//!   document here uses).
//! - `crd` (feature `crd`): the Kubernetes custom resources.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod credential;
pub mod dtype;
pub mod entity_key;
pub mod error;
pub mod feast_config;
pub mod feature_view;
pub mod json;
pub mod keys;
pub mod proto;
pub mod registry;
pub mod registry_config;
pub mod routing;
pub mod yaml;

#[cfg(feature = "crd")]
pub mod crd;

pub use dtype::Dtype;
pub use entity_key::{EntityKeyError, SerializationVersion};
pub use error::ConfigError;
pub use routing::{RoutingError, RoutingTable};
