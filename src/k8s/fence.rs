//! The fence: until when this process may act on the cluster. Leader election holds one
//! end ([`Fence::hold_until`], [`Fence::close`]); every controller API call checks it
//! ([`Fence::check`]), so a leader that was paused past its renew deadline cannot write
//! after a standby took over. A handle passed in, not a process-wide static.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A controller API call refused because this process does not (or no longer) lead.
#[derive(Debug, thiserror::Error)]
#[error(
    "this operator process does not hold the leader lease (a standby, or a leader that could not renew in time)"
)]
pub struct NotLeader;

#[derive(Debug, Clone, Copy)]
enum State {
    /// No leader election: always open.
    Open,
    /// Open until this instant (a standby's or a deposed leader's is in the past).
    Until(Instant),
}

/// Shared by the election and the controllers of one process (clones share the state).
#[derive(Debug, Clone)]
pub struct Fence(Arc<Mutex<State>>);

impl Fence {
    /// Always open: the process runs without leader election.
    pub fn open() -> Self {
        Self(Arc::new(Mutex::new(State::Open)))
    }

    /// Closed until the election opens it.
    pub fn closed() -> Self {
        Self(Arc::new(Mutex::new(State::Until(Instant::now()))))
    }

    /// Open until `t` (the last renewal plus the renew deadline).
    pub fn hold_until(&self, t: Instant) {
        self.set(State::Until(t));
    }

    /// Closed from now on.
    pub fn close(&self) {
        self.set(State::Until(Instant::now()));
    }

    fn set(&self, s: State) {
        if let Ok(mut f) = self.0.lock() {
            *f = s;
        }
    }

    /// Ok while this process may call the API.
    pub fn check(&self) -> Result<(), NotLeader> {
        let state = self
            .0
            .lock()
            .map(|f| *f)
            .unwrap_or(State::Until(Instant::now()));
        match state {
            State::Open => Ok(()),
            State::Until(t) if Instant::now() < t => Ok(()),
            State::Until(_) => Err(NotLeader),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fence_opens_until_its_deadline_and_closes() {
        assert!(Fence::open().check().is_ok());
        let f = Fence::closed();
        assert!(f.check().is_err());
        let other = f.clone();
        f.hold_until(Instant::now() + Duration::from_secs(60));
        assert!(other.check().is_ok(), "clones share the state");
        f.hold_until(Instant::now() - Duration::from_millis(1));
        assert!(other.check().is_err());
        f.hold_until(Instant::now() + Duration::from_secs(60));
        f.close();
        assert!(other.check().is_err());
    }
}
