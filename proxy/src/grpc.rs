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
use api::proto::feast::types::RepeatedValue;
use api::proto::{Val, Value};
use api::routing::JoinKey;
use std::time::Duration;

use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::features::{EntitySource, FeatureRequest, ReadOutcome, Selection, entity_rows, read};
use crate::response::{Cell, ViewRows, column_cells, now_seconds};
use crate::server::{AppState, Caller, admit, authenticate, request_id};

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

/// The protobuf `entities` map as the serving core's entity source.
struct ProtoEntities<'a>(&'a HashMap<String, RepeatedValue>);

impl EntitySource for ProtoEntities<'_> {
    fn column(&self, jk: &JoinKey) -> Option<Result<Vec<Value>, ApiError>> {
        let col = self.0.get(&jk.name)?;
        Some(
            col.val
                .iter()
                .enumerate()
                .map(|(i, v)| coerce(v, jk.dtype, &jk.name, i))
                .collect(),
        )
    }
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
        let outcome = read(
            &snap,
            FeatureRequest {
                selection,
                full_names: req.full_feature_names,
                rows,
                entities: &ProtoEntities(&req.entities),
            },
            principal,
            limits,
            &state.shared.metrics,
        )
        .await?;
        let ReadOutcome {
            selected,
            results,
            typed_keys: typed,
        } = outcome;
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
        crate::access::note_status(code, result.as_ref().err().map(|e| e.class));
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

/// The gRPC listener's routes (`--grpc-listen`): the ServingService behind
/// the same authentication and admission as HTTP, and the standard
/// `grpc.health.v1.Health` service without authentication (kubelet gRPC
/// probes and load balancers send no token; it tells only whether the
/// proxy serves).
pub fn router(state: Arc<AppState>) -> axum::Router {
    use axum::middleware::from_fn_with_state;
    let serving = axum::Router::new()
        .route_service(
            "/feast.serving.ServingService/{*method}",
            service(Arc::clone(&state)),
        )
        .route_layer(from_fn_with_state(Arc::clone(&state), admit))
        .route_layer(from_fn_with_state(Arc::clone(&state), authenticate));
    serving
        .route_service(
            "/grpc.health.v1.Health/{*method}",
            HealthServer::new(Health::new(Arc::clone(&state))),
        )
        .layer(axum::middleware::from_fn_with_state(state, request_id))
}

/// Concurrent `Watch` streams the health service keeps open; more are
/// refused with RESOURCE_EXHAUSTED.
const HEALTH_WATCHERS: usize = 64;

/// How long one `Watch` stream lives; the protocol has clients call again.
const HEALTH_WATCH_LIFETIME: Duration = Duration::from_secs(300);

/// How often a `Watch` stream looks at the serving status.
const HEALTH_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// `grpc.health.v1.Health`: SERVING while routes are loaded and some
/// backend answers (as `/ready`), for the whole server (`""`) and for
/// `feast.serving.ServingService`; NOT_FOUND for any other service.
pub struct Health {
    state: Arc<AppState>,
    watchers: Arc<tokio::sync::Semaphore>,
}

impl Health {
    pub fn new(state: Arc<AppState>) -> Health {
        Health {
            state,
            watchers: Arc::new(tokio::sync::Semaphore::new(HEALTH_WATCHERS)),
        }
    }
}

/// The status of `service` given the routes in use; `None` for a service
/// this server does not have.
fn health_status(state: &AppState, service: &str) -> Option<ServingStatus> {
    if !service.is_empty() && service != "feast.serving.ServingService" {
        return None;
    }
    let serving = state
        .shared
        .current
        .load()
        .as_ref()
        .is_some_and(|snap| snap.serving());
    Some(if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    })
}

type WatchStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>,
>;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Health {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        match health_status(&self.state, &service) {
            Some(status) => Ok(Response::new(HealthCheckResponse {
                status: status as i32,
            })),
            None => Err(Status::not_found(format!("unknown service `{service}`"))),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let permit = Arc::clone(&self.watchers)
            .try_acquire_owned()
            .map_err(|_| Status::resource_exhausted("too many health watchers"))?;
        let service = request.into_inner().service;
        let state = Arc::clone(&self.state);
        let until = tokio::time::Instant::now() + HEALTH_WATCH_LIFETIME;
        // Sends the status now, then each change, until the lifetime ends.
        let stream = futures::stream::unfold(
            (None, permit),
            move |(last, permit): (Option<ServingStatus>, _)| {
                let state = Arc::clone(&state);
                let service = service.clone();
                async move {
                    loop {
                        let now = health_status(&state, &service)
                            .unwrap_or(ServingStatus::ServiceUnknown);
                        if last != Some(now) {
                            let msg = HealthCheckResponse { status: now as i32 };
                            return Some((Ok(msg), (Some(now), permit)));
                        }
                        if tokio::time::Instant::now() >= until {
                            return None;
                        }
                        tokio::time::sleep(HEALTH_WATCH_INTERVAL).await;
                    }
                }
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
