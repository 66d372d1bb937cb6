//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics:
//! the holder renews every `retry_period`; a candidate takes the lease when it is free,
//! released, or has not changed for the holder's `leaseDurationSeconds` by the
//! candidate's own clock (so clock skew between nodes does not matter); every write is
//! conditional on the resourceVersion that was read, so two candidates never both win.
//!
//! A leader that could not renew for `renew_deadline` steps down by its own clock, and
//! from that instant the [`Fence`] it was handed refuses every controller API call
//! ([`crate::k8s::Kube::call`]), so a leader that was paused (a long GC-like stall,
//! SIGSTOP, a partition) cannot write after a standby took over. The process then exits
//! (a restarted pod comes back as a standby), as controller-runtime does.
//!
//! `kube-lease-manager` (the maintained crate for kube 5) was considered: it keeps
//! reporting leadership while the API server cannot be reached, which is exactly the case
//! a fence has to cover, so the ~150 lines here are our own.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

use crate::clock::Clock;
use crate::k8s::{Error as ApiError, Fence, bounded};
use crate::metrics::Metrics;

/// Where the lease is and how it is held.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    pub name: String,
    /// Unique per process (the pod name, or host and pid).
    pub identity: String,
    /// A standby takes over when the lease has not changed for this long.
    pub lease_duration: Duration,
    /// The leader steps down when it could not renew for this long.
    pub renew_deadline: Duration,
    /// How often the leader renews and a standby looks.
    pub retry_period: Duration,
    pub api_timeout: Duration,
}

impl Settings {
    /// The same rules as client-go: retry < renew deadline < lease duration.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err("--leader-election-lease-duration must be at least 1s".into());
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(format!(
                "--leader-election-renew-deadline ({:?}) must be shorter than --leader-election-lease-duration ({:?}), or a leader could still act after a standby took over",
                self.renew_deadline, self.lease_duration
            ));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--leader-election-retry-period ({:?}) must be shorter than --leader-election-renew-deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }
}

/// What a candidate does with the lease it read.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Free, released, or its holder stopped renewing: take it.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Someone else holds it and renewed within its lease duration.
    Follow { holder: String },
}

/// Decides from the lease's spec (None: no lease yet) and how long, by our clock, it has
/// been unchanged.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Step {
    let Some(spec) = spec else {
        return Step::Acquire;
    };
    match spec.holder_identity.as_deref().filter(|h| !h.is_empty()) {
        None => Step::Acquire,
        Some(h) if h == me => Step::Renew,
        Some(h) => {
            let duration =
                Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
            if unchanged_for >= duration {
                Step::Acquire
            } else {
                Step::Follow {
                    holder: h.to_string(),
                }
            }
        }
    }
}

/// The spec that holds the lease for `me` from `now` (a renewal keeps the acquire time and
/// the transition count; taking it over counts a transition).
pub fn claimed(
    previous: Option<&LeaseSpec>,
    me: &str,
    now: Timestamp,
    duration: Duration,
) -> LeaseSpec {
    let previous = previous.cloned().unwrap_or_default();
    let ours = previous.holder_identity.as_deref() == Some(me);
    LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(duration.as_secs().max(1) as i32),
        renew_time: Some(MicroTime(now)),
        acquire_time: if ours {
            previous.acquire_time.clone().or(Some(MicroTime(now)))
        } else {
            Some(MicroTime(now))
        },
        lease_transitions: Some(match (ours, previous.holder_identity.is_some()) {
            (true, _) | (false, false) => previous.lease_transitions.unwrap_or(0),
            (false, true) => previous.lease_transitions.unwrap_or(0) + 1,
        }),
        ..previous
    }
}

/// The spec a leader writes when it stops: no holder, so a standby takes it at once.
pub fn released(previous: &LeaseSpec, now: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..previous.clone()
    }
}

/// Where the election stands for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Standby,
    Leader,
    /// Led, then could not renew in time or saw another holder: must stop.
    Deposed,
}

/// Starts campaigning. The returned channel moves Standby -> Leader -> Deposed; `fence`
/// is open while this process leads. When `stop` turns true, a leader releases the lease
/// and the task ends.
pub fn spawn(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    fence: Fence,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) -> (watch::Receiver<Role>, tokio::task::JoinHandle<()>) {
    fence.close();
    metrics.leader.set(0);
    let (tx, rx) = watch::channel(Role::Standby);
    let task = tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let mut seen: Option<(LeaseSpec, Instant)> = None;
        let mut leading = false;
        let mut last_renewal = Instant::now();
        let mut following: Option<String> = None;
        loop {
            let attempt = Instant::now();
            match try_once(&api, &settings, &clock, &mut seen).await {
                Ok(Step::Acquire | Step::Renew) => {
                    fence.hold_until(attempt + settings.renew_deadline);
                    last_renewal = attempt;
                    if !leading {
                        leading = true;
                        metrics.leader.set(1);
                        tracing::info!(identity = %settings.identity, lease = %settings.name, "became the leader");
                        let _ = tx.send(Role::Leader);
                    }
                }
                Ok(Step::Follow { holder }) => {
                    if leading {
                        tracing::error!(%holder, "another process holds the leader lease");
                        break;
                    }
                    if following.as_deref() != Some(holder.as_str()) {
                        tracing::info!(%holder, "standing by: another process leads");
                        following = Some(holder);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot read or write the lease");
                    if leading && last_renewal.elapsed() >= settings.renew_deadline {
                        tracing::error!(
                            "could not renew the leader lease for {:?}",
                            settings.renew_deadline
                        );
                        break;
                    }
                }
            }
            if leading && last_renewal.elapsed() >= settings.renew_deadline {
                tracing::error!("the leader lease was not renewed in time");
                break;
            }
            tokio::select! {
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    if leading {
                        release(&api, &settings, &clock).await;
                    }
                    fence.close();
                    metrics.leader.set(0);
                    return;
                }
                _ = tokio::time::sleep(settings.retry_period) => {}
            }
        }
        fence.close();
        metrics.leader.set(0);
        let _ = tx.send(Role::Deposed);
    });
    (rx, task)
}

/// Reads the lease and, when it is ours to take or renew, writes it (conditional on the
/// resourceVersion read). Returns what happened: Follow when another candidate won.
async fn try_once(
    api: &Api<Lease>,
    s: &Settings,
    clock: &Clock,
    seen: &mut Option<(LeaseSpec, Instant)>,
) -> Result<Step, ApiError> {
    let lease = bounded(s.api_timeout, api.get_opt(&s.name)).await?;
    let Some(lease) = lease else {
        let new = Lease {
            metadata: ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..Default::default()
            },
            spec: Some(claimed(None, &s.identity, clock.now(), s.lease_duration)),
        };
        return match bounded(s.api_timeout, api.create(&PostParams::default(), &new)).await {
            Ok(_) => Ok(Step::Acquire),
            Err(e) if e.code() == Some(409) => Ok(Step::Follow {
                holder: "(another candidate, just now)".into(),
            }),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let now = Instant::now();
    let unchanged_since = match seen {
        Some((prev, at)) if *prev == spec => *at,
        _ => {
            *seen = Some((spec.clone(), now));
            now
        }
    };
    let step = decide(Some(&spec), &s.identity, now - unchanged_since);
    if let Step::Follow { .. } = step {
        return Ok(step);
    }
    let mut new = lease.clone();
    new.spec = Some(claimed(
        Some(&spec),
        &s.identity,
        clock.now(),
        s.lease_duration,
    ));
    match bounded(
        s.api_timeout,
        api.replace(&s.name, &PostParams::default(), &new),
    )
    .await
    {
        Ok(_) => Ok(step),
        // Someone else wrote it between our read and write: look again next round.
        Err(e) if e.code() == Some(409) => Ok(Step::Follow {
            holder: "(another candidate, just now)".into(),
        }),
        Err(e) => Err(e),
    }
}

/// Gives the lease up so a standby takes over at once (best effort: it expires anyway).
async fn release(api: &Api<Lease>, s: &Settings, clock: &Clock) {
    let result = async {
        let Some(mut lease) = bounded(s.api_timeout, api.get_opt(&s.name)).await? else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(s.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(released(&spec, clock.now()));
        bounded(
            s.api_timeout,
            api.replace(&s.name, &PostParams::default(), &lease),
        )
        .await
        .map(|_| ())
    }
    .await;
    match result {
        Ok(()) => tracing::info!("released the leader lease"),
        Err(e) => {
            tracing::warn!(error = %e, "could not release the leader lease; it expires on its own")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, secs: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(secs),
            renew_time: Some(MicroTime(Timestamp::from_second(1_000).unwrap())),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_free_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", Duration::ZERO), Step::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", Duration::ZERO),
            Step::Acquire
        );
        let released = released(&held_by("b", 15), Timestamp::from_second(1_001).unwrap());
        assert_eq!(decide(Some(&released), "a", Duration::ZERO), Step::Acquire);
    }

    #[test]
    fn another_holder_is_followed_until_its_lease_is_unchanged_for_its_duration() {
        let spec = held_by("b", 15);
        assert_eq!(
            decide(Some(&spec), "a", Duration::from_secs(14)),
            Step::Follow { holder: "b".into() }
        );
        assert_eq!(
            decide(Some(&spec), "a", Duration::from_secs(15)),
            Step::Acquire
        );
        assert_eq!(
            decide(Some(&spec), "b", Duration::from_secs(60)),
            Step::Renew
        );
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_taking_over_counts_a_transition() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(1_002).unwrap();
        let mine = claimed(None, "a", t0, Duration::from_secs(15));
        assert_eq!(mine.lease_transitions, Some(0));
        assert_eq!(mine.lease_duration_seconds, Some(15));
        let renewed = claimed(Some(&mine), "a", t1, Duration::from_secs(15));
        assert_eq!(renewed.acquire_time, Some(MicroTime(t0)));
        assert_eq!(renewed.renew_time, Some(MicroTime(t1)));
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = claimed(Some(&renewed), "b", t1, Duration::from_secs(15));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.acquire_time, Some(MicroTime(t1)));
        assert_eq!(taken.lease_transitions, Some(1));
    }

    #[test]
    fn settings_follow_client_go_rules() {
        let ok = Settings {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            api_timeout: Duration::from_secs(5),
        };
        assert!(ok.validate().is_ok());
        let bad = Settings {
            renew_deadline: Duration::from_secs(15),
            ..ok.clone()
        };
        assert!(bad.validate().unwrap_err().contains("shorter than"));
        let bad = Settings {
            retry_period: Duration::from_secs(10),
            ..ok
        };
        assert!(bad.validate().unwrap_err().contains("retry-period"));
    }
}
