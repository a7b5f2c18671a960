//! Request-level bounds shared by HTTP and gRPC: admission (a global and a
//! per-principal bound on requests in flight, shedding instead of queueing),
//! the request deadline, and the per-client bound on failed
//! authentications. Connection-level bounds live in [`crate::listener`];
//! per-request size bounds (body, rows, features, cells) in
//! [`crate::features::Limits`], checked where a request is decoded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::error::ApiError;

/// Defaults of the flags of the same names (see `hos-proxy serve --help`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
pub const DEFAULT_MAX_IN_FLIGHT_PER_PRINCIPAL: usize = 256;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 60;

/// What a shed request is told to wait before retrying (`Retry-After`).
pub const RETRY_AFTER_SECONDS: &str = "1";

/// Who a request counts against for the per-principal bound: its principal
/// when authentication is on, else the client's address (every anonymous
/// request is the same principal, and one client must not starve others).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Tenant {
    Principal(String),
    Client(IpAddr),
    Unknown,
}

impl std::fmt::Display for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tenant::Principal(p) => write!(f, "principal `{p}`"),
            Tenant::Client(ip) => write!(f, "client {ip}"),
            Tenant::Unknown => f.write_str("this client"),
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    #[error(
        "the proxy is at its limit of {0} requests in flight (--max-in-flight); retry after the Retry-After delay"
    )]
    Global(usize),
    #[error(
        "{tenant} has {limit} requests in flight, its limit (--max-in-flight-per-principal); retry after the Retry-After delay"
    )]
    Tenant { tenant: Tenant, limit: usize },
}

impl Shed {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Shed::Global(_) => "global",
            Shed::Tenant { .. } => "principal",
        }
    }

    pub fn to_api_error(&self) -> ApiError {
        match self {
            Shed::Global(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Overloaded",
                self.to_string(),
            ),
            Shed::Tenant { .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                self.to_string(),
            ),
        }
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_tenant: HashMap<Tenant, usize>,
}

/// Bounds on requests in flight, globally and per tenant. Requests over a
/// bound are refused at once (503 or 429 with `Retry-After`): queueing
/// them would only grow memory and every admitted request's latency.
pub struct Admission {
    max_total: usize,
    max_per_tenant: usize,
    counts: Mutex<Counts>,
}

/// A request's place in flight; released on drop.
pub struct Admitted {
    admission: Arc<Admission>,
    tenant: Tenant,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Admitted({})", self.tenant)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Ok(mut c) = self.admission.counts.lock() {
            c.total = c.total.saturating_sub(1);
            if let Some(n) = c.by_tenant.get_mut(&self.tenant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    // The map holds only tenants with requests in flight,
                    // so it is bounded by --max-in-flight.
                    c.by_tenant.remove(&self.tenant);
                }
            }
        }
    }
}

impl Admission {
    pub fn new(max_total: usize, max_per_tenant: usize) -> Admission {
        Admission {
            max_total: max_total.max(1),
            max_per_tenant: max_per_tenant.max(1),
            counts: Mutex::new(Counts::default()),
        }
    }

    /// Admits one request of `tenant`, or says which bound it hit.
    pub fn admit(self: &Arc<Self>, tenant: Tenant) -> Result<Admitted, Shed> {
        let mut c = self
            .counts
            .lock()
            .map_err(|_| Shed::Global(self.max_total))?;
        if c.total >= self.max_total {
            return Err(Shed::Global(self.max_total));
        }
        let n = c.by_tenant.entry(tenant.clone()).or_insert(0);
        if *n >= self.max_per_tenant {
            return Err(Shed::Tenant {
                tenant,
                limit: self.max_per_tenant,
            });
        }
        *n += 1;
        c.total += 1;
        drop(c);
        Ok(Admitted {
            admission: Arc::clone(self),
            tenant,
        })
    }

    /// Requests in flight now (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.counts.lock().map(|c| c.total).unwrap_or(0)
    }
}

/// Per-client bound on failed authentications: a client (address) that
/// failed `per_minute` times within a minute gets 429 without its token
/// being checked (and without a TokenReview call), until the minute ends.
pub struct FailureLimiter {
    per_minute: u32,
    clients: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Most clients remembered; beyond it, expired entries are dropped and, if
/// still full, the table starts over (a flood of addresses cannot grow it).
const FAILURE_CLIENTS_MAX: usize = 10_000;

impl FailureLimiter {
    pub fn new(per_minute: u32) -> FailureLimiter {
        FailureLimiter {
            per_minute,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Whether `ip` may try to authenticate now (0 disables the bound).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let Ok(c) = self.clients.lock() else {
            return true;
        };
        match c.get(&ip) {
            Some((since, n)) => since.elapsed() >= FAILURE_WINDOW || *n < self.per_minute,
            None => true,
        }
    }

    /// Records a failed authentication of `ip`.
    pub fn failed(&self, ip: IpAddr) {
        if self.per_minute == 0 {
            return;
        }
        let Ok(mut c) = self.clients.lock() else {
            return;
        };
        if c.len() >= FAILURE_CLIENTS_MAX && !c.contains_key(&ip) {
            c.retain(|_, (since, _)| since.elapsed() < FAILURE_WINDOW);
            if c.len() >= FAILURE_CLIENTS_MAX {
                c.clear();
            }
        }
        let e = c.entry(ip).or_insert((Instant::now(), 0));
        if e.0.elapsed() >= FAILURE_WINDOW {
            *e = (Instant::now(), 0);
        }
        e.1 = e.1.saturating_add(1);
    }
}

/// The answer to a client over its failed-authentication bound.
pub fn too_many_failures(per_minute: u32) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        format!(
            "more than {per_minute} failed authentications from this client in a minute (--auth-failures-per-minute); retry later"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_bounds_total_and_each_tenant() {
        let a = Arc::new(Admission::new(3, 2));
        let t1 = Tenant::Principal("a".into());
        let t2 = Tenant::Principal("b".into());
        let x1 = a.admit(t1.clone()).unwrap();
        let x2 = a.admit(t1.clone()).unwrap();
        assert_eq!(
            a.admit(t1.clone()).unwrap_err(),
            Shed::Tenant {
                tenant: t1.clone(),
                limit: 2
            }
        );
        let y1 = a.admit(t2.clone()).unwrap();
        assert_eq!(a.admit(t2.clone()).unwrap_err(), Shed::Global(3));
        assert_eq!(a.in_flight(), 3);
        drop(x1);
        let x3 = a.admit(t1.clone()).unwrap();
        drop((x2, x3, y1));
        assert_eq!(a.in_flight(), 0);
        assert!(a.counts.lock().unwrap().by_tenant.is_empty());
        let msg = Shed::Tenant {
            tenant: t1,
            limit: 2,
        }
        .to_string();
        assert!(msg.contains("principal `a`"), "{msg}");
        assert!(msg.contains("--max-in-flight-per-principal"), "{msg}");
    }

    #[test]
    fn failure_limiter_blocks_after_the_bound() {
        let f = FailureLimiter::new(3);
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        let other: IpAddr = "127.0.0.8".parse().unwrap();
        for _ in 0..3 {
            assert!(f.allowed(ip));
            f.failed(ip);
        }
        assert!(!f.allowed(ip));
        assert!(f.allowed(other));
        assert!(FailureLimiter::new(0).allowed(ip));
    }

    #[test]
    fn failure_table_is_bounded() {
        let f = FailureLimiter::new(5);
        for i in 0..(FAILURE_CLIENTS_MAX as u32 + 10) {
            f.failed(IpAddr::from(std::net::Ipv4Addr::from(i)));
        }
        assert!(f.clients.lock().unwrap().len() <= FAILURE_CLIENTS_MAX);
    }
}
