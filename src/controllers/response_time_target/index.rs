//! The loop's memory of its targets, brought up to date from the cache only when the cache
//! changed, and then only for the targets whose object changed: each target's plan (its
//! group, evaluated alone, or invalid), scoped queries and interval are made when its
//! generation changes, not at every tick; the groups keep their members and when they are
//! next due. A tick in which nothing changed and nothing is due does no work per target.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use super::plan::{Plan, Planner, Queries};
use crate::api::ResponseTimeTarget;
use crate::slo::batch::GroupKey;
use crate::slo::decide::{interval_of, next_slot, says, urgent};

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

/// What the index keeps of one target.
#[derive(Debug)]
pub struct Entry {
    pub at: ObjectRef<ResponseTimeTarget>,
    pub plan: Plan,
    /// Its own queries, scoped, until its status shows them.
    pub queries: Queries,
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

#[derive(Default)]
pub struct Index {
    entries: HashMap<String, Entry>,
    units: BTreeMap<Unit, Schedule>,
    /// Members due at the next tick whatever their unit's schedule: new, or their spec
    /// changed (only they are evaluated then, not their whole group).
    now: BTreeMap<Unit, BTreeSet<String>>,
    /// Invalid targets whose status must say so (uids).
    invalid: BTreeSet<String>,
    /// A group gained or lost a member since [`Index::take_regrouped`].
    regrouped: bool,
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
    /// Returns the uids of the targets that are gone.
    pub fn refresh(
        &mut self,
        targets: &[Arc<ResponseTimeTarget>],
        planner: &impl Planner,
        default_interval: Duration,
    ) -> Vec<String> {
        let mut live = std::collections::HashSet::with_capacity(targets.len());
        for t in targets {
            let Some(uid) = t.metadata.uid.as_deref() else {
                continue;
            };
            live.insert(uid);
            self.update(uid, t, planner, default_interval);
        }
        let known = self.entries.keys();
        let gone: Vec<String> = known
            .filter(|u| !live.contains(u.as_str()))
            .cloned()
            .collect();
        for uid in &gone {
            self.remove(uid, default_interval);
        }
        gone
    }

    /// Evaluates a target at the next tick, alone of its group (its write failed, or what
    /// its status says changed outside its spec: its alerts were loaded).
    pub fn soon(&mut self, uid: &str) {
        let Some(e) = self.entries.get(uid) else {
            return;
        };
        match unit_of(uid, &e.plan) {
            Some(unit) => self.now.entry(unit).or_default().insert(uid.to_string()),
            None => self.invalid.insert(uid.to_string()),
        };
    }

    fn update(
        &mut self,
        uid: &str,
        t: &ResponseTimeTarget,
        planner: &impl Planner,
        default_interval: Duration,
    ) {
        let version = t.metadata.resource_version.as_deref();
        if let Some(e) = self.entries.get(uid)
            && e.version.as_deref() == version
        {
            return;
        }
        let uid = uid.to_string();
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
                queries: Queries::new(queries),
                version: None,
                generation,
                interval: interval_of(t, default_interval),
            };
            if let Some(unit) = unit_of(&uid, &entry.plan) {
                self.regrouped = true;
                let s = self.units.entry(unit).or_default();
                s.members.insert(uid.clone());
                let first = s.members.len() == 1;
                s.interval = if first {
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
        entry.version = version.map(str::to_string);
        if !entry.queries.settle(t) {
            entry.queries = Queries::new(planner.plan(t).1);
        }
        match (&entry.plan, urgent(t)) {
            (Plan::Invalid(p), urgent) if urgent || !says(t, p) => {
                self.invalid.insert(uid);
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
        self.regrouped = true;
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

    /// Whether a group gained or lost a member since the last call.
    pub fn take_regrouped(&mut self) -> bool {
        std::mem::take(&mut self.regrouped)
    }

    /// Each group with its members' values of varying label `label` (their namespaces,
    /// for the tenancy label); empty sets without a label.
    pub fn values_of(&self, label: Option<&str>) -> Vec<(GroupKey, BTreeSet<String>)> {
        let mut out = Vec::new();
        for (unit, s) in &self.units {
            let Unit::Group(key) = unit else { continue };
            let at = label.and_then(|l| key.eq_labels().iter().position(|e| e == l));
            let values = s
                .members
                .iter()
                .filter_map(|m| match (&self.entries.get(m)?.plan, at) {
                    (Plan::Group(g), Some(i)) => g.values.get(i).cloned(),
                    _ => None,
                })
                .collect();
            out.push((key.clone(), values));
        }
        out
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
#[path = "index_tests.rs"]
mod tests;
