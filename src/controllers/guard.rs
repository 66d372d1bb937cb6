//! The last line of defence of a controller: a reconcile that panics is turned into an
//! error of that object (category `InternalError`, its condition written by the runtime),
//! never the end of the controller; and the test hook that makes one panic.

use super::Error;

/// A test hook: with `MATURITY_FAILPOINT_PANIC=<name>` in the environment the reconcile of
/// every object named so panics, so the guard below is tested end to end
/// (`tests/hostile.rs`). Unset, it does nothing.
pub fn failpoint(name: &str) {
    static PANIC_ON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let on = PANIC_ON.get_or_init(|| std::env::var("MATURITY_FAILPOINT_PANIC").ok());
    if on.as_deref() == Some(name) {
        panic!("failpoint MATURITY_FAILPOINT_PANIC={name}");
    }
}

/// A test hook: with `MATURITY_FAILPOINT_CHURN=<name>` in the environment the object named
/// so gets a status that differs on every pass and is looked at again at once, the shape
/// of the write storms of issue 14 (a wrapped jitter wrote 47 times a second), so that the
/// write budget ([`super::writes`]) is tested end to end (`tests/hostile.rs`). Unset, it
/// is never true.
pub fn churns(name: &str) -> bool {
    static CHURN_ON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let on = CHURN_ON.get_or_init(|| std::env::var("MATURITY_FAILPOINT_CHURN").ok());
    on.as_deref() == Some(name)
}

/// A test hook: with `MATURITY_FAILPOINT_END=<controller>` (`assessments`, `drills`, ...)
/// in the environment that controller's task ends at once, so that `/readyz` failing for
/// a stopped controller is tested end to end (`tests/hostile.rs`). Unset, it is never true.
pub fn ends(controller: &str) -> bool {
    static END_ON: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let on = END_ON.get_or_init(|| std::env::var("MATURITY_FAILPOINT_END").ok());
    on.as_deref() == Some(controller)
}

/// `pass`, with a panic inside it turned into [`Error::Panicked`] (its message): one
/// object's bug never ends the controller.
pub async fn guarded<T>(pass: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(pass).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            Err(Error::Panicked(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_pass_becomes_an_internal_error() {
        let ok: Result<u8, Error> = guarded(async { Ok(1) }).await;
        assert_eq!(ok.unwrap(), 1);
        let boom: Result<u8, Error> = guarded(async {
            let days: i64 = 10_000_000;
            if days > 1 {
                panic!("days out of range: {days}");
            }
            Ok(1)
        })
        .await;
        match boom {
            Err(e @ Error::Panicked(_)) => {
                assert_eq!(e.category(), "InternalError");
                assert_eq!(
                    e.to_string(),
                    "the reconcile panicked: days out of range: 10000000"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
