//! Per-backend call guard: one backend's trouble stays with its own views.
//!
//! Every call to a backend goes through its [`Guard`], which
//! - bounds the calls in flight (`--backend-max-in-flight`): past it, a call
//!   waits for a slot only as long as its time bound allows;
//! - bounds each call in time (`--backend-timeout-ms`, retries included);
//! - retries an idempotent read once after an `unavailable` error, when the
//!   retry budget allows (10% of reads plus a few per second), so retries
//!   cannot multiply the load on a struggling backend;
//! - opens a circuit after `--breaker-failures` consecutive failures: calls
//!   then fail at once for `--breaker-cooldown-ms`, after which one probe
//!   call is let through; its success closes the circuit.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use backends::BackendError;
use tokio::sync::Semaphore;

/// Settings shared by every backend's guard.
#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Consecutive failures that open the circuit; 0 disables the breaker.
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Retries allowed per first attempt (0.1: one retry per ten reads).
    pub retry_ratio: f64,
    /// Retries always allowed per second, whatever the ratio.
    pub retry_floor_per_sec: f64,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            timeout: Duration::from_secs(5),
            max_in_flight: 256,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(2),
            retry_ratio: 0.1,
            retry_floor_per_sec: 5.0,
        }
    }
}

/// What a call is; only reads are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Write => "write",
        }
    }
}

/// Circuit states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out since `since`; others fail fast until it answers.
    HalfOpen {
        since: Instant,
    },
}

/// Why the circuit refuses a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("circuit open after {failures} consecutive failures; next probe in {} ms", next_probe.as_millis())]
    Open { failures: u32, next_probe: Duration },
    #[error("circuit half-open: waiting for the probe call")]
    Probing,
}

/// How a call was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Normal,
    Probe,
}

#[derive(Debug)]
struct RetryBudget {
    tokens: f64,
    last: Instant,
}

/// Why a call was refused before reaching the backend (a metrics label).
pub const REJECT_CIRCUIT_OPEN: &str = "circuit_open";
pub const REJECT_SATURATED: &str = "saturated";

/// A backend's guard; lives as long as the backend handle (across reloads
/// that keep the backend).
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    permits: Semaphore,
    circuit: Mutex<Circuit>,
    budget: Mutex<RetryBudget>,
}

/// The result of a guarded call plus what happened on the way.
pub struct Outcome<T> {
    pub result: Result<T, BackendError>,
    /// Retries made (0 or 1).
    pub retries: u32,
    /// Set when the guard refused the call without trying the backend.
    pub rejected: Option<&'static str>,
    /// The circuit's state after the call: true when open.
    pub circuit_open: bool,
}

/// Errors that say the backend itself is in trouble (not the request).
fn is_backend_failure(e: &BackendError) -> bool {
    matches!(e, BackendError::Unavailable(_) | BackendError::Query(_))
}

impl Guard {
    pub fn new(cfg: GuardConfig) -> Guard {
        Guard {
            permits: Semaphore::new(cfg.max_in_flight.max(1)),
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
            budget: Mutex::new(RetryBudget {
                tokens: cfg.retry_floor_per_sec,
                last: Instant::now(),
            }),
            cfg,
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// `Some(reason)` while the circuit refuses calls.
    pub fn open_reason(&self) -> Option<Refusal> {
        let now = Instant::now();
        match self.circuit.lock().ok().map(|c| *c)? {
            Circuit::Open { until } if until > now => Some(Refusal::Open {
                failures: self.cfg.breaker_failures,
                next_probe: until - now,
            }),
            Circuit::HalfOpen { .. } => Some(Refusal::Probing),
            _ => None,
        }
    }

    fn admit(&self, now: Instant) -> Result<Admission, Refusal> {
        if self.cfg.breaker_failures == 0 {
            return Ok(Admission::Normal);
        }
        let Ok(mut c) = self.circuit.lock() else {
            return Ok(Admission::Normal);
        };
        match *c {
            Circuit::Closed { .. } => Ok(Admission::Normal),
            Circuit::Open { until } if now < until => Err(Refusal::Open {
                failures: self.cfg.breaker_failures,
                next_probe: until - now,
            }),
            // A probe that never reported (its request was cancelled) is
            // replaced once its time bound has passed.
            Circuit::HalfOpen { since } if now < since + self.cfg.timeout => Err(Refusal::Probing),
            _ => {
                *c = Circuit::HalfOpen { since: now };
                Ok(Admission::Probe)
            }
        }
    }

    /// Records a call's result; returns whether the circuit is open after it.
    fn record(&self, failed: bool, admission: Admission) -> bool {
        if self.cfg.breaker_failures == 0 {
            return false;
        }
        let Ok(mut c) = self.circuit.lock() else {
            return false;
        };
        let now = Instant::now();
        let open = Circuit::Open {
            until: now + self.cfg.breaker_cooldown,
        };
        *c = match (*c, failed, admission) {
            (_, false, _) => Circuit::Closed { failures: 0 },
            (_, true, Admission::Probe) => open,
            (Circuit::Closed { failures }, true, Admission::Normal) => {
                if failures + 1 >= self.cfg.breaker_failures {
                    open
                } else {
                    Circuit::Closed {
                        failures: failures + 1,
                    }
                }
            }
            // A late failure of a call admitted before the circuit opened.
            (state, true, Admission::Normal) => state,
        };
        !matches!(*c, Circuit::Closed { .. })
    }

    /// Closes the circuit (the backend passed a health check).
    pub fn reset(&self) {
        if let Ok(mut c) = self.circuit.lock()
            && matches!(*c, Circuit::Open { .. })
        {
            *c = Circuit::Closed { failures: 0 };
        }
    }

    fn deposit_and_try_withdraw(&self, withdraw: bool) -> bool {
        let Ok(mut b) = self.budget.lock() else {
            return false;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        let cap = (self.cfg.retry_floor_per_sec * 10.0).max(10.0);
        b.tokens = (b.tokens + elapsed * self.cfg.retry_floor_per_sec).min(cap);
        if !withdraw {
            b.tokens = (b.tokens + self.cfg.retry_ratio).min(cap);
            return false;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Runs `call` under the guard's bounds.
    pub async fn run<T, F, Fut>(&self, op: Op, mut call: F) -> Outcome<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, BackendError>>,
    {
        let start = Instant::now();
        let deadline = start + self.cfg.timeout;
        let admission = match self.admit(start) {
            Ok(a) => a,
            Err(refusal) => {
                return Outcome {
                    result: Err(BackendError::Unavailable(refusal.to_string())),
                    retries: 0,
                    rejected: Some(REJECT_CIRCUIT_OPEN),
                    circuit_open: true,
                };
            }
        };
        let _permit = match tokio::time::timeout_at(deadline.into(), self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            _ => {
                return Outcome {
                    result: Err(BackendError::Unavailable(format!(
                        "saturated: {} calls in flight, none finished within {:?}",
                        self.cfg.max_in_flight, self.cfg.timeout
                    ))),
                    retries: 0,
                    rejected: Some(REJECT_SATURATED),
                    circuit_open: false,
                };
            }
        };
        if op == Op::Read {
            self.deposit_and_try_withdraw(false);
        }
        let mut retries = 0;
        let result = loop {
            let res = match tokio::time::timeout_at(deadline.into(), call()).await {
                Ok(r) => r,
                Err(_) => Err(BackendError::Unavailable(format!(
                    "no answer within {:?}",
                    self.cfg.timeout
                ))),
            };
            let retryable = matches!(&res, Err(BackendError::Unavailable(m)) if !m.starts_with("no answer within"));
            let time_left = deadline.saturating_duration_since(Instant::now());
            if retryable
                && op == Op::Read
                && retries == 0
                && admission == Admission::Normal
                && time_left > Duration::from_millis(20)
                && self.deposit_and_try_withdraw(true)
            {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            break res;
        };
        let failed = result.as_ref().err().is_some_and(is_backend_failure);
        let circuit_open = self.record(failed, admission);
        Outcome {
            result,
            retries,
            rejected: None,
            circuit_open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn cfg() -> GuardConfig {
        GuardConfig {
            timeout: Duration::from_millis(200),
            max_in_flight: 2,
            breaker_failures: 3,
            breaker_cooldown: Duration::from_millis(100),
            retry_ratio: 0.1,
            retry_floor_per_sec: 5.0,
        }
    }

    fn down() -> Result<u32, BackendError> {
        Err(BackendError::Unavailable("connection refused".into()))
    }

    #[tokio::test]
    async fn reads_retry_once_writes_never() {
        let g = Guard::new(cfg());
        let calls = AtomicU32::new(0);
        let out = g
            .run(Op::Read, || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move { if n == 0 { down() } else { Ok(7) } }
            })
            .await;
        assert_eq!(out.result.unwrap(), 7);
        assert_eq!(out.retries, 1);
        let calls = AtomicU32::new(0);
        let out = g
            .run(Op::Write, || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { down() }
            })
            .await;
        assert!(out.result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn breaker_opens_fails_fast_then_probes_and_closes() {
        let g = Guard::new(GuardConfig {
            retry_floor_per_sec: 0.0,
            retry_ratio: 0.0,
            ..cfg()
        });
        for _ in 0..3 {
            let out = g.run(Op::Write, || async { down() }).await;
            assert!(out.rejected.is_none());
        }
        let calls = AtomicU32::new(0);
        let out = g
            .run(Op::Read, || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Ok(1) }
            })
            .await;
        assert_eq!(out.rejected, Some(REJECT_CIRCUIT_OPEN));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "open circuit calls nothing"
        );
        let msg = out.result.unwrap_err().to_string();
        assert!(
            msg.contains("circuit open after 3 consecutive failures"),
            "{msg}"
        );
        tokio::time::sleep(Duration::from_millis(120)).await;
        let out = g.run(Op::Read, || async { Ok(2) }).await;
        assert_eq!(out.result.unwrap(), 2);
        assert!(!out.circuit_open);
        assert!(g.open_reason().is_none());
    }

    #[tokio::test]
    async fn failed_probe_reopens() {
        let g = Guard::new(GuardConfig {
            breaker_failures: 1,
            ..cfg()
        });
        let _ = g.run(Op::Write, || async { down() }).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        let out = g.run(Op::Read, || async { down() }).await;
        assert!(out.circuit_open);
        assert_eq!(out.retries, 0, "a probe is not retried");
        let out = g.run(Op::Read, || async { Ok(1) }).await;
        assert_eq!(out.rejected, Some(REJECT_CIRCUIT_OPEN));
    }

    #[tokio::test]
    async fn request_errors_do_not_open_the_circuit() {
        let g = Guard::new(GuardConfig {
            breaker_failures: 1,
            ..cfg()
        });
        let out = g
            .run(Op::Read, || async {
                Err::<u32, _>(BackendError::MissingTable {
                    table: "t".into(),
                    location: "x".into(),
                })
            })
            .await;
        assert!(!out.circuit_open);
    }

    #[tokio::test]
    async fn timeout_bounds_the_call_and_saturation_rejects() {
        let g = Arc::new(Guard::new(GuardConfig {
            max_in_flight: 1,
            breaker_failures: 0,
            ..cfg()
        }));
        let start = Instant::now();
        let out = g
            .run(Op::Write, || async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(1)
            })
            .await;
        let err = out.result.unwrap_err().to_string();
        assert!(err.contains("no answer within 200ms"), "{err}");
        assert!(start.elapsed() < Duration::from_millis(400));
        // Every slot taken: a call waits only its own time bound.
        let held = g.permits.acquire().await.unwrap();
        let start = Instant::now();
        let out = g.run(Op::Read, || async { Ok(2) }).await;
        assert_eq!(out.rejected, Some(REJECT_SATURATED));
        assert!(start.elapsed() < Duration::from_millis(400));
        drop(held);
        assert_eq!(g.run(Op::Read, || async { Ok(3) }).await.result.unwrap(), 3);
    }

    #[test]
    fn retry_budget_is_bounded() {
        let g = Guard::new(GuardConfig {
            retry_floor_per_sec: 0.0,
            retry_ratio: 0.1,
            ..cfg()
        });
        // Floor tokens start at 0 here; ten reads earn one retry.
        for _ in 0..9 {
            g.deposit_and_try_withdraw(false);
        }
        assert!(!g.deposit_and_try_withdraw(true));
        g.deposit_and_try_withdraw(false);
        g.deposit_and_try_withdraw(false);
        assert!(g.deposit_and_try_withdraw(true));
        assert!(!g.deposit_and_try_withdraw(true));
    }
}
