//! Whether Prometheus has loaded the rules written: asked of its rules API, only about
//! rules written and not shown yet.

use std::time::{Duration, Instant};

use super::{AlertsSeen, RECHECK, RuleSync};
use crate::controllers::Context;
use crate::slo::rules::overdue;

/// How often Prometheus's rules API is asked about rules written and not shown yet (only
/// while there are some); rules overdue are asked about every [`RECHECK`].
pub const LOAD_CHECK: Duration = Duration::from_secs(5);

/// Rule groups asked about in one request (their names go in the URL).
const GROUPS_PER_CHECK: usize = 40;

impl RuleSync {
    /// Asks Prometheus's rules API about the rules written and not shown yet (every
    /// [`LOAD_CHECK`]; overdue ones every [`RECHECK`]): only such rules are asked about,
    /// and only they are looked at (nothing is, while every rule is shown).
    /// Returns the uids whose rules are shown now. (A rule turning overdue needs no call:
    /// the target's next evaluation says it.)
    pub async fn check_loaded(&mut self, ctx: &Context) -> Vec<String> {
        let grace = ctx.settings.rules_load_grace;
        let now = ctx.clock.now();
        let due = |at: Option<Instant>, every: Duration| at.is_none_or(|at| at.elapsed() >= every);
        let (pending_due, late_due) = (
            due(self.checked.0, LOAD_CHECK),
            due(self.checked.1, RECHECK),
        );
        let mut changed = Vec::new();
        if self.unconfirmed.is_empty() || !(pending_due || late_due) {
            return changed;
        }
        let mut asked: Vec<(&String, &String)> = Vec::new();
        let (mut pending, mut late) = (false, false);
        for uid in &self.unconfirmed {
            if let Some((AlertsSeen::Written { since }, group)) = self.seen.get(uid) {
                if overdue(*since, now, grace) {
                    if late_due {
                        asked.push((uid, group));
                        late = true;
                    }
                } else if pending_due {
                    asked.push((uid, group));
                    pending = true;
                }
            }
        }
        if asked.is_empty() {
            return changed;
        }
        if pending {
            self.checked.0 = Some(Instant::now());
        }
        if late {
            self.checked.1 = Some(Instant::now());
        }
        let mut shown = std::collections::HashSet::new();
        for chunk in asked.chunks(GROUPS_PER_CHECK) {
            let names: Vec<&str> = chunk.iter().map(|(_, g)| g.as_str()).collect();
            match ctx.prom.rule_groups(&names).await {
                Ok(groups) => shown.extend(groups),
                Err(e) => {
                    tracing::debug!(error = %e, "asking Prometheus which rules it has loaded failed");
                    return changed;
                }
            }
        }
        changed.extend(
            asked
                .iter()
                .filter(|(_, g)| shown.contains(g.as_str()))
                .map(|(uid, _)| (*uid).clone()),
        );
        for uid in &changed {
            self.unconfirmed.remove(uid);
            if let Some((seen, _)) = self.seen.get_mut(uid) {
                *seen = AlertsSeen::Loaded;
            }
        }
        changed
    }
}
