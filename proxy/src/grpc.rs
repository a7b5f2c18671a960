//! Feast's gRPC `feast.serving.ServingService` (`--grpc-listen`): the
//! request/response of Feast's Go and Java feature servers, so gRPC clients
//! in any language read every backend. Served by the same selection,
//! authorization, guarded reads and TTL rules as `/get-online-features`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use api::dtype::Dtype;
use api::proto::feast::serving::get_online_features_request::Kind;
use api::proto::feast::serving::get_online_features_response::FeatureVector;
use api::proto::feast::serving::serving_service_server::{ServingService, ServingServiceServer};
use api::proto::feast::serving::{
    FeatureList, FeatureViewMetadata, FieldStatus, GetFeastServingInfoRequest,
    GetFeastServingInfoResponse, GetOnlineFeaturesRequest, GetOnlineFeaturesResponse,
    GetOnlineFeaturesResponseMetadata,
};
use api::proto::{Val, Value};
use tonic::{Request, Response, Status};

use crate::auth::{Access, Principal};
use crate::error::ApiError;
use crate::features::{Selection, dummy_key, encode_keys, entity_rows, read_views, select};
use crate::response::{Cell, ViewRows, column_cells, now_seconds};
use crate::server::{AppState, Caller, admit, authenticate};

/// The ServingService implementation.
pub struct Serving {
    state: Arc<AppState>,
}

impl Serving {
    /// The service over `state` (tests call its methods directly).
    pub fn new(state: Arc<AppState>) -> Self {
        Serving { state }
    }
}

/// The tonic service, ready to mount on a router.
pub fn service(state: Arc<AppState>) -> ServingServiceServer<Serving> {
    let limit = state.limits.max_body_bytes;
    ServingServiceServer::new(Serving::new(state)).max_decoding_message_size(limit)
}

/// Converts a request key value to the join key's declared type where the
/// conversion is exact (Go and Java clients often send int32 for int64).
fn coerce(v: &Value, dtype: Option<Dtype>, name: &str, row: usize) -> Result<Value, ApiError> {
    let Some(d) = dtype else {
        return Ok(v.clone());
    };
    let val = match (&v.val, d) {
        (None, _) | (Some(Val::NullVal(_)), _) => {
            return Err(ApiError::invalid(format!(
                "`entities.{name}` row {row} is null"
            )));
        }
        (Some(Val::Int32Val(i)), Dtype::Int64) => Val::Int64Val(i64::from(*i)),
        (Some(Val::Int64Val(i)), Dtype::Int32) => {
            Val::Int32Val(i32::try_from(*i).map_err(|_| {
                ApiError::invalid(format!(
                    "`entities.{name}` row {row}: {i} does not fit int32"
                ))
            })?)
        }
        (Some(other), d) => {
            if api::proto::value_type_of(other) != d.value_type() {
                return Err(ApiError::invalid(format!(
                    "`entities.{name}` row {row}: expected {}, got {:?}",
                    d.as_str(),
                    api::proto::value_type_of(other)
                )));
            }
            other.clone()
        }
    };
    Ok(Value { val: Some(val) })
}

fn to_timestamp(ts: backends::Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ts.seconds,
        nanos: i32::try_from(ts.nanos).unwrap_or(0),
    }
}

fn epoch() -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: 0,
        nanos: 0,
    }
}

impl Serving {
    async fn online_features(
        &self,
        principal: &Principal,
        req: GetOnlineFeaturesRequest,
    ) -> Result<GetOnlineFeaturesResponse, ApiError> {
        let state = &self.state;
        let snap = state
            .shared
            .current
            .load_full()
            .ok_or_else(ApiError::not_ready)?;
        let limits = &state.limits;
        let selection = match &req.kind {
            Some(Kind::FeatureService(s)) => Selection::Service(s),
            Some(Kind::Features(FeatureList { val })) => {
                Selection::Refs(val.iter().map(String::as_str).collect())
            }
            None => Selection::Refs(Vec::new()),
        };
        let rows = entity_rows(
            req.entities.iter().map(|(k, v)| (k.as_str(), v.val.len())),
            "entities",
            limits,
        )?;
        // The project first: a caller not allowed it learns nothing about
        // which views exist.
        principal.authorize_project(&snap, Access::Read)?;
        let selected = select(&snap, selection, req.full_feature_names, rows, limits)?;
        principal.authorize(
            &snap,
            selected.order.iter().map(|(v, _)| v.as_ref()),
            Access::Read,
        )?;
        let version = snap.table.entity_key_serialization_version;
        let mut keys = Vec::with_capacity(selected.order.len());
        // Typed key columns, by join key, for the keys and the echo.
        let mut typed: HashMap<&str, Vec<Value>> = HashMap::new();
        for (view, _) in &selected.order {
            let join_keys: Vec<&api::routing::JoinKey> = view.join_keys().collect();
            if join_keys.is_empty() {
                keys.push(vec![dummy_key(version)?; rows]);
                continue;
            }
            for jk in &join_keys {
                if typed.contains_key(jk.name.as_str()) {
                    continue;
                }
                let Some(col) = req.entities.get(&jk.name) else {
                    return Err(ApiError::invalid(format!(
                        "`entities` is missing join key `{}` of feature view `{}`",
                        jk.name, view.name
                    )));
                };
                let col = col
                    .val
                    .iter()
                    .enumerate()
                    .map(|(i, v)| coerce(v, jk.dtype, &jk.name, i))
                    .collect::<Result<Vec<_>, _>>()?;
                typed.insert(jk.name.as_str(), col);
            }
            let names: Vec<&str> = join_keys.iter().map(|k| k.name.as_str()).collect();
            let columns: Vec<&[Value]> = names
                .iter()
                .map(|n| typed.get(n).map(Vec::as_slice).unwrap_or_default())
                .collect();
            keys.push(encode_keys(
                &names, &columns, rows, version, "entities", limits,
            )?);
        }
        let results = read_views(&snap, &selected, keys, &state.shared.metrics).await?;
        let by_view: HashMap<&str, (&Vec<String>, &ViewRows)> = selected
            .order
            .iter()
            .zip(results.iter())
            .map(|((v, fs), r)| (v.name.as_str(), (fs, r)))
            .collect();

        let mut names = Vec::new();
        let mut vectors = Vec::new();
        // Join keys first: those of the selected views in the order they
        // declare them, then (like Feast and the HTTP API) every other
        // request key that is some view's join key, by name (a protobuf map
        // has no order). Keys no view knows are dropped.
        let mut echoed: Vec<&str> = Vec::new();
        for (view, _) in &selected.order {
            for jk in view.join_keys() {
                if !echoed.contains(&jk.name.as_str()) {
                    echoed.push(jk.name.as_str());
                }
            }
        }
        let mut others: Vec<&str> = req
            .entities
            .keys()
            .map(String::as_str)
            .filter(|k| {
                !echoed.contains(k)
                    && *k != api::keys::DUMMY_ENTITY_JOIN_KEY
                    && snap
                        .views
                        .values()
                        .any(|v| v.join_keys().any(|j| j.name == *k))
            })
            .collect();
        others.sort_unstable();
        echoed.extend(others);
        for name in echoed {
            let values = match typed.get(name) {
                Some(v) => v.clone(),
                None => req
                    .entities
                    .get(name)
                    .map(|r| r.val.clone())
                    .unwrap_or_default(),
            };
            names.push(name.to_string());
            vectors.push(FeatureVector {
                statuses: vec![FieldStatus::Present as i32; values.len()],
                event_timestamps: vec![epoch(); values.len()],
                values,
            });
        }
        let now = now_seconds();
        for c in &selected.cols {
            let (features, rows_of) = by_view[c.view.name.as_str()];
            let fi = features.iter().position(|f| *f == c.feature).unwrap_or(0);
            let mut v = FeatureVector::default();
            for cell in column_cells(rows_of, fi, rows, c.view.ttl_seconds, now) {
                let (value, status, ts) = match cell {
                    Cell::Present(val, ts) => (val.clone(), FieldStatus::Present, to_timestamp(ts)),
                    Cell::OutsideMaxAge(ts) => (
                        Value::default(),
                        FieldStatus::OutsideMaxAge,
                        to_timestamp(ts),
                    ),
                    Cell::NotFound => (Value::default(), FieldStatus::NotFound, epoch()),
                    Cell::Invalid => (Value::default(), FieldStatus::Invalid, epoch()),
                };
                v.values.push(value);
                v.statuses.push(status as i32);
                v.event_timestamps.push(ts);
            }
            names.push(c.name.clone());
            vectors.push(v);
        }
        let feature_view_metadata = if req.include_feature_view_version_metadata {
            selected
                .order
                .iter()
                .map(|(v, _)| FeatureViewMetadata {
                    name: v.name.clone(),
                    version: 0,
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(GetOnlineFeaturesResponse {
            metadata: Some(GetOnlineFeaturesResponseMetadata {
                feature_names: Some(FeatureList { val: names }),
                feature_view_metadata,
            }),
            results: vectors,
            status: results.iter().all(Result::is_ok),
        })
    }
}

#[tonic::async_trait]
impl ServingService for Serving {
    async fn get_feast_serving_info(
        &self,
        _request: Request<GetFeastServingInfoRequest>,
    ) -> Result<Response<GetFeastServingInfoResponse>, Status> {
        Ok(Response::new(GetFeastServingInfoResponse {
            version: format!("hos-proxy {}", env!("CARGO_PKG_VERSION")),
        }))
    }

    async fn get_online_features(
        &self,
        request: Request<GetOnlineFeaturesRequest>,
    ) -> Result<Response<GetOnlineFeaturesResponse>, Status> {
        let start = Instant::now();
        let principal = request
            .extensions()
            .get::<Caller>()
            .map(|c| Arc::clone(&c.0))
            .unwrap_or_else(|| Arc::new(Principal::anonymous()));
        let result = self.online_features(&principal, request.into_inner()).await;
        let code = match &result {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        };
        self.state.shared.metrics.request(
            "grpc-get-online-features",
            code,
            start.elapsed().as_secs_f64(),
        );
        match result {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::warn!(status = e.status.as_u16(), error = %e.message, "gRPC request failed");
                }
                Err(e.grpc_status())
            }
        }
    }
}

/// The gRPC ServingService's routes (its own listener, `--grpc-listen`),
/// behind the same authentication and admission as HTTP.
pub fn router(state: Arc<AppState>) -> axum::Router {
    use axum::middleware::from_fn_with_state;
    axum::Router::new()
        .route_service(
            "/feast.serving.ServingService/{*method}",
            service(Arc::clone(&state)),
        )
        .route_layer(from_fn_with_state(Arc::clone(&state), admit))
        .route_layer(from_fn_with_state(state, authenticate))
}
