//! The loop's memory of its targets, brought up to date from the cache only when the cache
//! changed, and then only for the targets whose object changed: each target's plan (its
//! group, evaluated alone, or invalid), scoped queries and interval are made when its
//! generation changes, not at every tick; the groups keep their members and when they are
//! next due. A tick in which nothing changed and nothing is due does no work per target.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::ResponseTimeTarget;
use crate::slo::Problem;
use crate::slo::batch::{GroupKey, Membership};
use crate::slo::decide::{interval_of, next_slot, urgent};

/// What is evaluated together: a group of one shape, or one alertResolution target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    Group(GroupKey),
    Single(String),
}

/// A unit due now: all its members, or `only` these (by uid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub unit: Unit,
    pub only: Option<BTreeSet<String>>,
}

/// How a target is evaluated.
#[derive(Debug, Clone)]
pub enum Plan {
    /// In a group, with its values of the group's varying labels.
    Group(Membership),
    Single,
    Invalid(Problem),
}

/// What the index keeps of one target.
#[derive(Debug)]
pub struct Entry {
    pub at: ObjectRef<ResponseTimeTarget>,
    pub plan: Plan,
    /// Its own queries, scoped, as status shows them.
    pub queries: Arc<BTreeMap<String, String>>,
    version: Option<String>,
    generation: Option<i64>,
    interval: Duration,
}

#[derive(Debug, Default)]
struct Schedule {
    members: BTreeSet<String>,
    interval: Duration,
    next: Option<Instant>,
}

/// How the index makes a target's plan and queries (parsing and scoping its selectors).
pub trait Planner {
    fn plan(&self, t: &ResponseTimeTarget) -> (Plan, BTreeMap<String, String>);
}

#[derive(Default)]
pub struct Index {
    entries: HashMap<String, Entry>,
    units: BTreeMap<Unit, Schedule>,
    /// Members due at the next tick whatever their unit's schedule: new, or their spec
    /// changed (only they are evaluated then, not their whole group).
    now: BTreeMap<Unit, BTreeSet<String>>,
    /// Invalid targets whose status must say so (uids).
    invalid: BTreeSet<String>,
}

fn unit_of(uid: &str, plan: &Plan) -> Option<Unit> {
    match plan {
        Plan::Group(m) => Some(Unit::Group(m.key.clone())),
        Plan::Single => Some(Unit::Single(uid.to_string())),
        Plan::Invalid(_) => None,
    }
}

impl Index {
    /// Brings the index up to date with `targets` (the whole cache): only targets whose
    /// object changed are looked at, only those whose generation changed are planned.
    pub fn refresh(
        &mut self,
        targets: &[Arc<ResponseTimeTarget>],
        planner: &impl Planner,
        default_interval: Duration,
    ) {
        let mut live = std::collections::HashSet::with_capacity(targets.len());
        for t in targets {
            let Some(uid) = t.uid() else { continue };
            live.insert(uid.clone());
            self.update(uid, t, planner, default_interval);
        }
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|u| !live.contains(*u))
            .cloned()
            .collect();
        for uid in gone {
            self.remove(&uid, default_interval);
        }
    }

    /// Says an invalid target's problem again at the next tick (its write failed).
    pub fn again(&mut self, uid: &str) {
        if self.entries.contains_key(uid) {
            self.invalid.insert(uid.to_string());
        }
    }

    fn update(
        &mut self,
        uid: String,
        t: &ResponseTimeTarget,
        planner: &impl Planner,
        default_interval: Duration,
    ) {
        let version = t.resource_version();
        if let Some(e) = self.entries.get(&uid)
            && e.version == version
        {
            return;
        }
        let generation = t.metadata.generation;
        let same_spec = self
            .entries
            .get(&uid)
            .is_some_and(|e| e.generation == generation);
        if !same_spec {
            let (plan, queries) = planner.plan(t);
            self.remove(&uid, default_interval);
            let entry = Entry {
                at: ObjectRef::from_obj(t),
                plan,
                queries: Arc::new(queries),
                version: None,
                generation,
                interval: interval_of(t, default_interval),
            };
            if let Some(unit) = unit_of(&uid, &entry.plan) {
                let s = self.units.entry(unit).or_default();
                s.members.insert(uid.clone());
                s.interval = if s.interval.is_zero() {
                    entry.interval
                } else {
                    s.interval.min(entry.interval)
                };
            }
            self.entries.insert(uid.clone(), entry);
        }
        let Some(entry) = self.entries.get_mut(&uid) else {
            return;
        };
        entry.version = version;
        match (&entry.plan, urgent(t)) {
            (Plan::Invalid(p), urgent) => {
                let said = t.status.as_ref().is_some_and(|s| {
                    s.common.conditions.iter().any(|c| {
                        c.type_ == crate::slo::READY
                            && c.reason == p.reason()
                            && c.status == "False"
                    })
                });
                if urgent || !said {
                    self.invalid.insert(uid);
                }
            }
            (plan, true) => {
                if let Some(unit) = unit_of(&uid, plan) {
                    self.now.entry(unit).or_default().insert(uid);
                }
            }
            _ => {}
        }
    }

    fn remove(&mut self, uid: &str, default_interval: Duration) {
        let Some(old) = self.entries.remove(uid) else {
            return;
        };
        self.invalid.remove(uid);
        let Some(unit) = unit_of(uid, &old.plan) else {
            return;
        };
        let Some(s) = self.units.get_mut(&unit) else {
            return;
        };
        s.members.remove(uid);
        if let Some(now) = self.now.get_mut(&unit) {
            now.remove(uid);
        }
        if s.members.is_empty() {
            self.units.remove(&unit);
            self.now.remove(&unit);
            return;
        }
        let entries = &self.entries;
        s.interval = s
            .members
            .iter()
            .filter_map(|m| entries.get(m).map(|e| e.interval))
            .min()
            .unwrap_or(default_interval);
    }

    /// What is due at `now` (`clock`: the same moment on the wall clock, for each unit's
    /// stable phase): whole units at their slot (each then next due one interval later, at
    /// its phase), and the new or changed members of the others.
    pub fn due(&mut self, now: Instant, clock: Timestamp) -> Vec<Due> {
        let mut due = Vec::new();
        let mut urgent = std::mem::take(&mut self.now);
        for (unit, s) in self.units.iter_mut() {
            let next = *s
                .next
                .get_or_insert_with(|| now + next_slot(unit, s.interval, clock));
            if now >= next {
                s.next = Some(now + next_slot(unit, s.interval, clock));
                urgent.remove(unit);
                due.push(Due {
                    unit: unit.clone(),
                    only: None,
                });
            } else if let Some(only) = urgent.remove(unit).filter(|o| !o.is_empty()) {
                due.push(Due {
                    unit: unit.clone(),
                    only: Some(only),
                });
            }
        }
        due
    }

    /// Invalid targets whose status must say why, once each (until they change again).
    pub fn take_invalid(&mut self) -> Vec<(String, &Entry)> {
        let uids = std::mem::take(&mut self.invalid);
        uids.into_iter()
            .filter_map(|u| self.entries.get(&u).map(|e| (u, e)))
            .collect()
    }

    /// The members of what is due.
    pub fn members(&self, due: &Due) -> Vec<&Entry> {
        let Some(s) = self.units.get(&due.unit) else {
            return Vec::new();
        };
        s.members
            .iter()
            .filter(|m| due.only.as_ref().is_none_or(|o| o.contains(*m)))
            .filter_map(|m| self.entries.get(m))
            .collect()
    }

    /// The groups' keys.
    pub fn group_keys(&self) -> impl Iterator<Item = GroupKey> + '_ {
        self.units.keys().filter_map(|u| match u {
            Unit::Group(k) => Some(k.clone()),
            Unit::Single(_) => None,
        })
    }

    /// The batched groups, the targets evaluated alone, and the targets in all.
    pub fn sizes(&self) -> (usize, usize, usize) {
        let groups = self
            .units
            .keys()
            .filter(|u| matches!(u, Unit::Group(_)))
            .count();
        (groups, self.units.len() - groups, self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::prom::enforce::Tenancy;
    use crate::slo::batch::membership;
    use crate::testing::{TargetBuilder, at};

    /// Plans by the real batching rules, counting how often it is asked.
    #[derive(Default)]
    struct Counting(Cell<usize>);

    impl Planner for Counting {
        fn plan(&self, t: &ResponseTimeTarget) -> (Plan, BTreeMap<String, String>) {
            self.0.set(self.0.get() + 1);
            let m = membership("shop", &t.spec, &Tenancy::default()).unwrap();
            (Plan::Group(m), BTreeMap::new())
        }
    }

    fn target(
        name: &str,
        version: &str,
        generation: i64,
        evaluated: bool,
    ) -> Arc<ResponseTimeTarget> {
        let mut t = TargetBuilder::new(name).generation(generation).build();
        t.spec.indicator = serde_json::from_value(serde_json::json!({"latency": {
            "histogram": "h", "selector": format!("{{service=\"{name}\"}}"), "threshold": "300ms"}}))
        .unwrap();
        t.metadata.resource_version = Some(version.into());
        if evaluated {
            let mut status = crate::api::response_time_target::ResponseTimeTargetStatus::default();
            status.common.observed_generation = Some(generation);
            t.status = Some(status);
        }
        Arc::new(t)
    }

    #[test]
    fn targets_are_planned_once_per_generation_and_only_changed_members_jump_the_queue() {
        let minute = Duration::from_secs(60);
        let planner = Counting::default();
        let mut index = Index::default();
        let (a, b) = (target("a", "1", 1, true), target("b", "1", 1, true));
        index.refresh(&[a.clone(), b.clone()], &planner, minute);
        assert_eq!(planner.0.get(), 2);
        assert_eq!(index.sizes(), (1, 0, 2), "one shape: one group of two");

        // Nothing is due before the group's slot; at it, the whole group is.
        let start = Instant::now();
        assert!(index.due(start, at(0)).is_empty());
        let slot = next_slot(&index.units.keys().next().unwrap().clone(), minute, at(0));
        let due = index.due(start + slot, at(0) + slot);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].only, None);
        assert_eq!(index.members(&due[0]).len(), 2);

        // A status write (new resourceVersion, same generation): looked at, not planned.
        let a2 = target("a", "2", 1, true);
        index.refresh(&[a2, b.clone()], &planner, minute);
        assert_eq!(planner.0.get(), 2, "no new plan for a status change");
        assert!(index.due(start + slot, at(0) + slot).is_empty());

        // A spec change: planned again, and only that member is due at once.
        let a3 = target("a", "3", 2, false);
        index.refresh(&[a3, b.clone()], &planner, minute);
        assert_eq!(planner.0.get(), 3);
        let due = index.due(start + slot, at(0) + slot);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].only, Some(BTreeSet::from(["uid-a".to_string()])));
        assert_eq!(index.members(&due[0]).len(), 1);

        // A deleted target leaves its group; the last one takes the group with it.
        index.refresh(&[b], &planner, minute);
        assert_eq!(index.sizes(), (1, 0, 1));
        index.refresh(&[], &planner, minute);
        assert_eq!(index.sizes(), (0, 0, 0));
    }
}
