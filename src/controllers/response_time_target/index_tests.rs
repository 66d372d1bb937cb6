//! The index, with the real batching rules and a counting planner.
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

fn target(name: &str, version: &str, generation: i64, evaluated: bool) -> Arc<ResponseTimeTarget> {
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
