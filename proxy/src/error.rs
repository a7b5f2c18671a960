//! The one place internal errors become HTTP statuses and bodies. Bodies
//! have Feast's shape: a JSON string holding `{"module", "class",
//! "message"}`, which Feast's `remote` store turns back into the matching
//! Feast exception.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Feast exception class name the error corresponds to.
    pub class: &'static str,
    pub message: String,
    /// Extra members of the detail object (beside module, class and
    /// message), e.g. what a partly failed write did and did not write.
    pub details: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, class: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            class,
            message: message.into(),
            details: None,
        }
    }

    /// 422: the request is malformed or a value has the wrong type.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "ValidationError", message)
    }

    pub fn view_not_found(view: &str, project: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "FeatureViewNotFoundException",
            format!("Feature view {view} does not exist in project {project}"),
        )
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLarge", message)
    }

    pub fn backend(backend: &str, err: &backends::BackendError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "BackendUnavailable",
            format!("backend `{backend}` failed: {err}"),
        )
    }

    pub fn not_ready() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NotReady",
            "no routing configuration loaded yet",
        )
    }

    /// The same error with `details` added to its detail object.
    pub fn with_details(mut self, details: serde_json::Map<String, serde_json::Value>) -> Self {
        self.details = Some(details);
        self
    }

    /// The gRPC status of this error (same message as the HTTP body).
    pub fn grpc_status(&self) -> tonic::Status {
        let code = match self.status {
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
            StatusCode::GATEWAY_TIMEOUT => tonic::Code::DeadlineExceeded,
            s if s.is_client_error() => tonic::Code::InvalidArgument,
            _ => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }

    fn body(&self) -> String {
        let mut inner = serde_json::Map::new();
        inner.insert("module".into(), "feast.errors".into());
        inner.insert("class".into(), self.class.into());
        inner.insert("message".into(), self.message.clone().into());
        if let Some(d) = &self.details {
            for (k, v) in d {
                inner.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        serde_json::Value::String(serde_json::Value::Object(inner).to_string()).to_string()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        (self.status, [(CONTENT_TYPE, "application/json")], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_a_json_string_holding_feast_detail() {
        let e = ApiError::view_not_found("nope", "interop");
        let outer: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        let inner: serde_json::Value = serde_json::from_str(outer.as_str().unwrap()).unwrap();
        assert_eq!(inner["class"], "FeatureViewNotFoundException");
        assert_eq!(inner["module"], "feast.errors");
        assert_eq!(
            inner["message"],
            "Feature view nope does not exist in project interop"
        );
    }
}
