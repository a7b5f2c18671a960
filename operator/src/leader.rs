//! Leader election with a coordination.k8s.io Lease: one replica acts,
//! the others wait and take over when the holder releases the Lease or
//! stops renewing it.
//!
//! Timing (as client-go's leader election): the leader renews every
//! `retry_period`; when no renewal has succeeded for `renew_deadline`
//! (shorter than the lease) it stops acting, so it has stopped before a
//! standby may take over. A standby tries every `retry_period`; it takes a
//! Lease that nobody holds at once, and a held one once the Lease has not
//! changed for its `leaseDurationSeconds` as measured on the standby's own
//! clock from when it first saw that version (no comparison of the
//! holder's wall-clock `renewTime` with ours, so clock skew between nodes
//! does not matter). On SIGTERM the leader stops its controllers and then
//! releases the Lease (no holder, `leaseDurationSeconds: 1`), so a standby
//! takes over at its next try instead of after the whole lease.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;

use crate::readiness::{Readiness, Role};

/// The shortest lease accepted; shorter ones are raised to it.
pub const MIN_LEASE_SECONDS: u64 = 3;
/// The default retry period is a third of the lease, at most this.
pub const MAX_DEFAULT_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TimingError {
    #[error("--lease-renew-deadline-seconds must be a number of seconds above 0, got {0}")]
    BadDeadline(f64),
    #[error("--lease-retry-seconds must be a number of seconds above 0, got {0}")]
    BadRetry(f64),
    #[error(
        "the renew deadline ({deadline:?}) must be shorter than the lease ({lease:?}): a leader must stop acting before a standby may take over"
    )]
    DeadlineNotBelowLease { deadline: Duration, lease: Duration },
    #[error(
        "the retry period ({retry:?}) must be shorter than the renew deadline ({deadline:?}): a leader needs more than one try to renew"
    )]
    RetryNotBelowDeadline { retry: Duration, deadline: Duration },
}

/// Lease duration, renew deadline and retry period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub lease: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

fn seconds(v: f64, err: fn(f64) -> TimingError) -> Result<Duration, TimingError> {
    if v.is_finite() && v > 0.0 {
        Duration::try_from_secs_f64(v).map_err(|_| err(v))
    } else {
        Err(err(v))
    }
}

impl Timing {
    /// `lease_seconds` (raised to [`MIN_LEASE_SECONDS`]); the renew
    /// deadline defaults to 2/3 of the lease, the retry period to a third
    /// of the lease but at most [`MAX_DEFAULT_RETRY`].
    pub fn new(
        lease_seconds: u64,
        renew_deadline_seconds: Option<f64>,
        retry_seconds: Option<f64>,
    ) -> Result<Timing, TimingError> {
        let lease = Duration::from_secs(lease_seconds.max(MIN_LEASE_SECONDS));
        let renew_deadline = match renew_deadline_seconds {
            Some(v) => seconds(v, TimingError::BadDeadline)?,
            None => lease * 2 / 3,
        };
        let retry_period = match retry_seconds {
            Some(v) => seconds(v, TimingError::BadRetry)?,
            None => (lease / 3).min(MAX_DEFAULT_RETRY),
        };
        if renew_deadline >= lease {
            return Err(TimingError::DeadlineNotBelowLease {
                deadline: renew_deadline,
                lease,
            });
        }
        if retry_period >= renew_deadline {
            return Err(TimingError::RetryNotBelowDeadline {
                retry: retry_period,
                deadline: renew_deadline,
            });
        }
        Ok(Timing {
            lease,
            renew_deadline,
            retry_period,
        })
    }
}

/// Why a leader stopped leading.
#[derive(Debug, PartialEq, Eq)]
pub enum Lost {
    /// Another replica holds the Lease.
    TakenBy(Option<String>),
    /// No renewal succeeded within the renew deadline.
    Deadline,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TakenBy(Some(h)) => write!(f, "{h} took the leader Lease"),
            Lost::TakenBy(None) => write!(f, "the leader Lease was released by another writer"),
            Lost::Deadline => write!(f, "no Lease renewal succeeded within the renew deadline"),
        }
    }
}

/// What one try found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// We hold the Lease (taken or renewed).
    Ours,
    /// Someone else holds it and it has not expired.
    Theirs(Option<String>),
    /// The Lease changed between our read and our write: try again.
    Conflict,
}

/// The Lease version a replica last saw and when it first saw it.
struct Observed {
    resource_version: Option<String>,
    at: Instant,
}

pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    observed: Option<Observed>,
    /// When the last successful take or renewal was sent.
    last_renew: Instant,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl LeaderElection {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Self {
        LeaderElection {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            identity: identity.to_string(),
            timing,
            observed: None,
            last_renew: Instant::now(),
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Records the version read; true when it has not changed for the
    /// lease's duration since we first saw it.
    fn observe_expired(&mut self, lease: &Lease, read_at: Instant) -> bool {
        let rv = lease.metadata.resource_version.clone();
        let seen = match &self.observed {
            Some(o) if o.resource_version == rv => o.at,
            _ => {
                self.observed = Some(Observed {
                    resource_version: rv,
                    at: read_at,
                });
                read_at
            }
        };
        let secs = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.timing.lease);
        read_at.saturating_duration_since(seen) >= secs
    }

    /// One try to take or keep the Lease.
    async fn try_acquire(&mut self) -> Result<Attempt, kube::Error> {
        let duration = i32::try_from(self.timing.lease.as_secs()).unwrap_or(15);
        let read_at = Instant::now();
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Ours),
                Err(e) if conflict(&e) => Ok(Attempt::Conflict),
                Err(e) => Err(e),
            };
        };
        let expired = self.observe_expired(&lease, read_at);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        if !ours && holder.is_some() && !expired {
            return Ok(Attempt::Theirs(holder));
        }
        let mut next = spec.clone();
        if !ours {
            next.acquire_time = Some(now());
            next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        next.holder_identity = Some(self.identity.clone());
        next.lease_duration_seconds = Some(duration);
        next.renew_time = Some(now());
        lease.spec = Some(next);
        // The resourceVersion read above makes this a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Ours),
            Err(e) if conflict(&e) => Ok(Attempt::Conflict),
            Err(e) => Err(e),
        }
    }

    /// Waits until this replica holds the Lease, telling `readiness` who
    /// holds it meanwhile.
    pub async fn acquire(&mut self, readiness: &Readiness) {
        let mut last_holder: Option<Option<String>> = None;
        loop {
            let started = Instant::now();
            let res = tokio::time::timeout(self.timing.renew_deadline, self.try_acquire()).await;
            match res {
                Ok(Ok(Attempt::Ours)) => {
                    self.last_renew = started;
                    return;
                }
                Ok(Ok(Attempt::Theirs(holder))) => {
                    if last_holder.as_ref() != Some(&holder) {
                        tracing::info!(
                            holder = holder.as_deref().unwrap_or(""),
                            "standby: another replica holds the leader Lease"
                        );
                    }
                    readiness.set_role(Role::Standby {
                        holder: holder.clone(),
                    });
                    last_holder = Some(holder);
                }
                Ok(Ok(Attempt::Conflict)) => {
                    if readiness.role() == Role::Starting {
                        readiness.set_role(Role::Standby { holder: None });
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election"),
                Err(_) => tracing::warn!(
                    timeout = ?self.timing.renew_deadline,
                    "leader election: the Lease request timed out"
                ),
            }
            tokio::time::sleep(self.timing.retry_period).await;
        }
    }

    /// Renews the Lease every retry period until `until` completes
    /// (`Ok` with its output) or leadership is lost: another replica holds
    /// the Lease, or no renewal succeeded within the renew deadline
    /// (counted from the last successful one, across calls). On `Err` the
    /// caller must stop acting at once.
    pub async fn renew_until<F: Future>(&mut self, until: F) -> Result<F::Output, Lost> {
        tokio::pin!(until);
        loop {
            let deadline = self.last_renew + self.timing.renew_deadline;
            let wake = (Instant::now() + self.timing.retry_period).min(deadline);
            tokio::select! {
                out = &mut until => return Ok(out),
                _ = tokio::time::sleep_until(wake) => {}
            }
            let started = Instant::now();
            if started >= deadline {
                return Err(Lost::Deadline);
            }
            let attempt = tokio::select! {
                out = &mut until => return Ok(out),
                r = tokio::time::timeout_at(deadline, self.try_acquire()) => r,
            };
            match attempt {
                Ok(Ok(Attempt::Ours)) => self.last_renew = started,
                Ok(Ok(Attempt::Theirs(holder))) => return Err(Lost::TakenBy(holder)),
                Ok(Ok(Attempt::Conflict)) => {
                    tracing::warn!("lease renewal conflicted with another write; retrying")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "lease renewal failed"),
                Err(_) => return Err(Lost::Deadline),
            }
        }
    }

    /// Gives the Lease up: no holder, a one-second duration (replicas of
    /// older versions judge expiry by `renewTime` plus duration), written
    /// only if we still hold it and nobody wrote since our read.
    /// `Ok(true)` when released.
    pub async fn release(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        spec.acquire_time = Some(now());
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(t: Timing) -> (f64, f64, f64) {
        (
            t.lease.as_secs_f64(),
            t.renew_deadline.as_secs_f64(),
            t.retry_period.as_secs_f64(),
        )
    }

    #[test]
    fn defaults_follow_the_lease() {
        assert_eq!(
            secs(Timing::new(15, None, None).unwrap()),
            (15.0, 10.0, 2.0)
        );
        assert_eq!(secs(Timing::new(6, None, None).unwrap()), (6.0, 4.0, 2.0));
        assert_eq!(secs(Timing::new(3, None, None).unwrap()), (3.0, 2.0, 1.0));
        // Raised to the minimum, as before.
        assert_eq!(secs(Timing::new(1, None, None).unwrap()), (3.0, 2.0, 1.0));
        assert_eq!(
            secs(Timing::new(60, None, Some(0.5)).unwrap()),
            (60.0, 40.0, 0.5)
        );
    }

    /// An API server that accepts connections and never answers.
    async fn silent_api() -> Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        Client::try_from(config).unwrap()
    }

    #[tokio::test]
    async fn a_leader_that_cannot_renew_gives_up_at_the_renew_deadline() {
        let timing = Timing::new(3, Some(1.0), Some(0.3)).unwrap();
        let mut le = LeaderElection::new(silent_api().await, "ns", "lease", "me", timing);
        le.last_renew = Instant::now();
        let started = Instant::now();
        let res = le.renew_until(std::future::pending::<()>()).await;
        let took = started.elapsed();
        assert_eq!(res, Err(Lost::Deadline));
        // At the deadline, not after a hung request's own timeout.
        assert!(
            took >= Duration::from_millis(990) && took < Duration::from_millis(1300),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn renewing_ends_when_the_awaited_work_ends() {
        let timing = Timing::new(3, Some(1.0), Some(0.3)).unwrap();
        let mut le = LeaderElection::new(silent_api().await, "ns", "lease", "me", timing);
        le.last_renew = Instant::now();
        let res = le
            .renew_until(async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                7
            })
            .await;
        // Even with a renewal in flight (at 300 ms, hung), the work's end wins.
        assert_eq!(res, Ok(7));
    }

    fn lease(rv: &str, seconds: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some("other".into()),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn a_lease_expires_its_duration_after_its_version_was_first_seen() {
        let timing = Timing::new(15, None, None).unwrap();
        let mut le = LeaderElection::new(silent_api().await, "ns", "lease", "me", timing);
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        assert!(!le.observe_expired(&lease("1", 6), at(0.0)));
        assert!(!le.observe_expired(&lease("1", 6), at(5.9)));
        // The Lease's own duration counts, not ours (15 s).
        assert!(le.observe_expired(&lease("1", 6), at(6.0)));
        // A renewal (a new version) starts the count again.
        assert!(!le.observe_expired(&lease("2", 6), at(7.0)));
        assert!(!le.observe_expired(&lease("2", 6), at(12.9)));
        assert!(le.observe_expired(&lease("2", 6), at(13.0)));
    }

    #[test]
    fn inconsistent_timings_are_refused() {
        assert_eq!(
            Timing::new(6, Some(6.0), None),
            Err(TimingError::DeadlineNotBelowLease {
                deadline: Duration::from_secs(6),
                lease: Duration::from_secs(6)
            })
        );
        assert_eq!(
            Timing::new(15, Some(2.0), None),
            Err(TimingError::RetryNotBelowDeadline {
                retry: Duration::from_secs(2),
                deadline: Duration::from_secs(2)
            })
        );
        assert_eq!(
            Timing::new(15, Some(-1.0), None),
            Err(TimingError::BadDeadline(-1.0))
        );
        assert_eq!(
            Timing::new(15, None, Some(0.0)),
            Err(TimingError::BadRetry(0.0))
        );
        assert!(matches!(
            Timing::new(15, None, Some(f64::NAN)),
            Err(TimingError::BadRetry(_))
        ));
    }
}
