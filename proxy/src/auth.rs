//! Bearer-token authentication and per-team authorization.
//!
//! With `--auth-config FILE` every feature request (HTTP and gRPC) needs
//! `Authorization: Bearer <token>`. The file (mount it from a Secret) lists
//! principals; a token identifies one either directly (`token`, or its
//! SHA-256 in `token_sha256`), or, with `--auth-token-review`, through a
//! Kubernetes TokenReview whose user or groups a principal names:
//!
//! ```yaml
//! principals:
//!   - name: team-a-models
//!     token_sha256: 5e88489...     # or token: <literal>
//!     users: ["system:serviceaccount:team-a:trainer"]   # TokenReview users
//!     groups: ["team-a-readers"]                        # TokenReview groups
//!     projects: [demo]          # default: every project
//!     teams: [team_a]           # routing-tag values; default: every team
//!     access: [read, write]     # default: [read]
//! ```
//!
//! A view's team is its routing-tag value (its backend's name when it has
//! no tag). Missing or unknown tokens get 401; a principal touching a view
//! of another project or team, or writing without `write`, gets 403 naming
//! the view. `/health`, `/ready` and `/metrics` stay open for probes. The
//! file is re-read when it changes; a bad version is rejected and the last
//! good one stays in force.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use api::routing::RoutedView;
use arc_swap::ArcSwap;
use axum::http::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::Snapshot;

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Write,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    name: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_sha256: Option<String>,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    projects: Option<Vec<String>>,
    #[serde(default)]
    teams: Option<Vec<String>>,
    #[serde(default = "read_only")]
    access: Vec<Access>,
}

fn read_only() -> Vec<Access> {
    vec![Access::Read]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    principals: Vec<RawPrincipal>,
}

/// A principal: who a request acts as and what it may touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    /// `None`: any project.
    projects: Option<Vec<String>>,
    /// `None`: any team. `*` in the list also means any.
    teams: Option<Vec<String>>,
    read: bool,
    write: bool,
    users: Vec<String>,
    groups: Vec<String>,
}

impl Principal {
    /// Everything allowed: the principal of every request when auth is off.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            projects: None,
            teams: None,
            read: true,
            write: true,
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    /// Checks that this principal may `access` the snapshot's project at
    /// all. Runs before any view is looked up, so a caller not allowed the
    /// project gets the same 403 whether or not a view exists.
    pub fn authorize_project(&self, snap: &Snapshot, access: Access) -> Result<(), ApiError> {
        let project = &snap.table.project;
        let allowed = match access {
            Access::Read => self.read,
            Access::Write => self.write,
        };
        let verb = match access {
            Access::Read => "read",
            Access::Write => "write",
        };
        if !allowed {
            return Err(forbidden(format!(
                "principal `{}` may not {verb} features",
                self.name
            )));
        }
        if let Some(p) = &self.projects
            && !p.iter().any(|x| x == project || x == "*")
        {
            return Err(forbidden(format!(
                "principal `{}` may not {verb} project {project}",
                self.name
            )));
        }
        Ok(())
    }

    /// Checks that this principal may `access` every view in `views`.
    pub fn authorize<'a>(
        &self,
        snap: &Snapshot,
        views: impl IntoIterator<Item = &'a RoutedView>,
        access: Access,
    ) -> Result<(), ApiError> {
        self.authorize_project(snap, access)?;
        let verb = match access {
            Access::Read => "read",
            Access::Write => "write",
        };
        if let Some(teams) = &self.teams {
            for v in views {
                let team = view_team(snap, v);
                if !teams.iter().any(|t| t == team || t == "*") {
                    return Err(forbidden(format!(
                        "principal `{}` may not {verb} feature view `{}` of team `{team}`",
                        self.name, v.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The team a view belongs to: its routing-tag value, else its backend.
pub fn view_team<'a>(snap: &Snapshot, view: &'a RoutedView) -> &'a str {
    view.tags
        .get(&snap.table.routing_tag)
        .map(String::as_str)
        .unwrap_or(view.backend.as_str())
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "FeastPermissionError", message)
}

pub fn unauthenticated(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "AuthenticationError", message)
}

/// A parsed auth file.
#[derive(Debug, Default)]
pub struct AuthConfig {
    by_token: HashMap<[u8; 32], Arc<Principal>>,
    principals: Vec<Arc<Principal>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("cannot read auth config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("auth config {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn sha256(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl AuthConfig {
    pub fn parse(path: &Path, text: &str) -> Result<AuthConfig, AuthConfigError> {
        let invalid = |message: String| AuthConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let raw: RawConfig = api::yaml::from_str(text)
            .map_err(|e| invalid(format!("at `{}`: {}", e.path, e.message)))?;
        let mut cfg = AuthConfig::default();
        for (i, r) in raw.principals.into_iter().enumerate() {
            let digest = match (&r.token, &r.token_sha256) {
                (Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "principals[{i}] (`{}`): give `token` or `token_sha256`, not both",
                        r.name
                    )));
                }
                (Some(t), None) if t.is_empty() => {
                    return Err(invalid(format!(
                        "principals[{i}] (`{}`): empty token",
                        r.name
                    )));
                }
                (Some(t), None) => Some(sha256(t)),
                (None, Some(h)) => {
                    let bytes = hex::decode(h.trim()).ok().filter(|b| b.len() == 32);
                    let Some(bytes) = bytes else {
                        return Err(invalid(format!(
                            "principals[{i}] (`{}`): token_sha256 must be 64 hex digits",
                            r.name
                        )));
                    };
                    let mut d = [0u8; 32];
                    d.copy_from_slice(&bytes);
                    Some(d)
                }
                (None, None) => None,
            };
            if digest.is_none() && r.users.is_empty() && r.groups.is_empty() {
                return Err(invalid(format!(
                    "principals[{i}] (`{}`) names no token, user or group",
                    r.name
                )));
            }
            let p = Arc::new(Principal {
                name: r.name.clone(),
                projects: r.projects,
                teams: r.teams,
                read: r.access.contains(&Access::Read),
                write: r.access.contains(&Access::Write),
                users: r.users,
                groups: r.groups,
            });
            if let Some(d) = digest
                && cfg.by_token.insert(d, Arc::clone(&p)).is_some()
            {
                return Err(invalid(format!(
                    "principals[{i}] (`{}`): the same token is given twice",
                    r.name
                )));
            }
            cfg.principals.push(p);
        }
        Ok(cfg)
    }

    pub fn load(path: &Path) -> Result<AuthConfig, AuthConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn by_identity(&self, user: &str, groups: &[String]) -> Option<Arc<Principal>> {
        self.principals
            .iter()
            .find(|p| p.users.iter().any(|u| u == user))
            .or_else(|| {
                self.principals
                    .iter()
                    .find(|p| p.groups.iter().any(|g| groups.contains(g)))
            })
            .cloned()
    }
}

/// The identity a TokenReview returned (None: not authenticated).
type Reviewed = Option<(String, Vec<String>)>;

/// Default of `--auth-cache-seconds`: how long a TokenReview answer is
/// reused. Short, so a revoked token stops working soon.
pub const DEFAULT_REVIEW_TTL: Duration = Duration::from_secs(10);
const REVIEW_CACHE_MAX: usize = 10_000;

/// How bearer tokens unknown to the auth file are reviewed.
#[derive(Clone)]
pub struct TokenReviewer {
    pub client: kube::Client,
    /// Audiences the token must be valid for (`--auth-audiences`); empty:
    /// the API server's own audience.
    pub audiences: Vec<String>,
    /// How long an answer is reused (`--auth-cache-seconds`).
    pub cache_ttl: Duration,
}

/// The authenticator requests go through.
pub struct Authenticator {
    path: PathBuf,
    config: ArcSwap<AuthConfig>,
    review: Option<TokenReviewer>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Reviewed)>>,
}

impl Authenticator {
    pub fn new(
        path: PathBuf,
        review: Option<TokenReviewer>,
    ) -> Result<Authenticator, AuthConfigError> {
        let config = AuthConfig::load(&path)?;
        Ok(Authenticator {
            path,
            config: ArcSwap::from_pointee(config),
            review,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Re-reads the file; a bad version is rejected and the last good one kept.
    pub fn reload(&self) -> Result<(), AuthConfigError> {
        let cfg = AuthConfig::load(&self.path)?;
        self.config.store(Arc::new(cfg));
        Ok(())
    }

    /// Checks the file every `every` and reloads it when its content changed.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        let path = self.path.clone();
        tokio::spawn(async move {
            let mut last = std::fs::read(&path).ok();
            loop {
                tokio::time::sleep(every).await;
                let Some(auth) = weak.upgrade() else { break };
                let now = std::fs::read(&path).ok();
                if now == last {
                    continue;
                }
                last = now;
                match auth.reload() {
                    Ok(()) => tracing::info!(path = %path.display(), "auth config reloaded"),
                    Err(e) => {
                        tracing::error!(error = %e, "auth config rejected; the previous one stays in force")
                    }
                }
            }
        });
    }

    /// The principal of an `Authorization` header value.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Arc<Principal>, ApiError> {
        let Some(header) = header else {
            return Err(unauthenticated(
                "missing `Authorization: Bearer <token>` header",
            ));
        };
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <token>`"))?;
        let digest = sha256(token);
        let config = self.config.load_full();
        if let Some(p) = config.by_token.get(&digest) {
            return Ok(Arc::clone(p));
        }
        let Some(reviewer) = &self.review else {
            return Err(unauthenticated("unknown bearer token"));
        };
        let identity = self.review(reviewer, token, digest).await?;
        match identity {
            None => Err(unauthenticated(
                "the bearer token is not valid (TokenReview)",
            )),
            Some((user, groups)) => config.by_identity(&user, &groups).ok_or_else(|| {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "FeastPermissionError",
                    format!("user `{user}` is authenticated but no principal of the auth config names it or its groups"),
                )
            }),
        }
    }

    async fn review(
        &self,
        reviewer: &TokenReviewer,
        token: &str,
        digest: [u8; 32],
    ) -> Result<Reviewed, ApiError> {
        let ttl = reviewer.cache_ttl;
        if let Ok(cache) = self.cache.lock()
            && let Some((at, who)) = cache.get(&digest)
            && at.elapsed() < ttl
        {
            return Ok(who.clone());
        }
        use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
        let api: kube::Api<TokenReview> = kube::Api::all(reviewer.client.clone());
        let wanted = (!reviewer.audiences.is_empty()).then(|| reviewer.audiences.clone());
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: wanted.clone(),
            },
            ..Default::default()
        };
        let answer = api
            .create(&kube::api::PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "TokenReview failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "AuthenticationUnavailable",
                    "cannot verify the bearer token: the TokenReview API call failed",
                )
            })?;
        let who = answer.status.and_then(|s| {
            if s.authenticated != Some(true) {
                return None;
            }
            // The API server answers with the audiences the token is valid
            // for among those asked; none of ours means not for us.
            if let Some(wanted) = &wanted
                && !s
                    .audiences
                    .as_ref()
                    .is_some_and(|got| got.iter().any(|a| wanted.contains(a)))
            {
                return None;
            }
            let user = s.user?;
            Some((user.username?, user.groups.unwrap_or_default()))
        });
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= REVIEW_CACHE_MAX {
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
                if cache.len() >= REVIEW_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(digest, (Instant::now(), who.clone()));
        }
        Ok(who)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
principals:
  - name: a
    token: token-a
    teams: [team_a]
    access: [read, write]
  - name: reader
    token_sha256: "8d6bd4a1d0bd4d8b4a6e46e5d2bd5c8f3d0b6e3a6c1b3e5e9c6a1f9e2b7d4c3a"
  - name: sa
    users: ["system:serviceaccount:ns:trainer"]
    projects: [other]
"#;

    #[test]
    fn parses_and_finds_tokens() {
        let cfg = AuthConfig::parse(Path::new("auth.yaml"), FILE).unwrap();
        let a = cfg.by_token.get(&sha256("token-a")).unwrap();
        assert_eq!(a.name, "a");
        assert!(a.read && a.write);
        assert_eq!(cfg.principals.len(), 3);
        assert!(!cfg.principals[1].write, "access defaults to read");
        let sa = cfg
            .by_identity("system:serviceaccount:ns:trainer", &[])
            .unwrap();
        assert_eq!(sa.name, "sa");
    }

    #[test]
    fn bad_files_name_the_problem() {
        for (text, msg) in [
            ("principals: [{name: x}]", "names no token, user or group"),
            (
                "principals: [{name: x, token: a, token_sha256: b}]",
                "not both",
            ),
            ("principals: [{name: x, token_sha256: zz}]", "64 hex digits"),
            (
                "principals: [{name: x, token: a, access: [admin]}]",
                "principals[0].access[0]",
            ),
            (
                "principals: [{name: x, token: a}, {name: y, token: a}]",
                "same token",
            ),
        ] {
            let err = AuthConfig::parse(Path::new("auth.yaml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(msg), "{text}: {err}");
        }
    }

    #[tokio::test]
    async fn bearer_header_is_required_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.yaml");
        std::fs::write(&path, FILE).unwrap();
        let auth = Authenticator::new(path.clone(), None).unwrap();
        assert_eq!(auth.authenticate(None).await.unwrap_err().status, 401);
        assert_eq!(
            auth.authenticate(Some("Basic abc"))
                .await
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            auth.authenticate(Some("Bearer nope"))
                .await
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            auth.authenticate(Some("Bearer token-a"))
                .await
                .unwrap()
                .name,
            "a"
        );
        // A bad edit is rejected; the old tokens keep working.
        std::fs::write(&path, "principals: nope").unwrap();
        assert!(auth.reload().is_err());
        assert!(auth.authenticate(Some("Bearer token-a")).await.is_ok());
        std::fs::write(&path, "principals: [{name: b, token: token-b}]").unwrap();
        auth.reload().unwrap();
        assert!(auth.authenticate(Some("Bearer token-a")).await.is_err());
        assert_eq!(
            auth.authenticate(Some("Bearer token-b"))
                .await
                .unwrap()
                .name,
            "b"
        );
    }
}
