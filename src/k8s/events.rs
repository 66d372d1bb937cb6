//! Events: a pure core says what should be announced (a [`Note`]); the edge publishes it
//! on the resource ([`super::Kube::publish`]).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

pub use crate::conditions::Note;

/// The Event recorder of a controller: reports as the operator, with the pod's name.
pub(super) fn recorder(client: kube::Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: super::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Publishes `notes` on `object` (messages cut to 1000 characters); a failure is logged,
/// never fatal: Events are announcements, status is the record.
pub(super) async fn publish(
    recorder: &Recorder,
    object: &ObjectReference,
    action: &str,
    notes: &[Note],
) {
    for n in notes {
        let event = Event {
            type_: if n.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: n.reason.clone(),
            note: Some(n.message.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, object).await {
            tracing::warn!(object = ?object.name, reason = %n.reason, error = %e, "publishing an Event failed");
        }
    }
}
