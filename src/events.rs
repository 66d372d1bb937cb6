//! The one Event helper: a pure core says what should be announced (a [`Note`]); the
//! controllers publish it on their resource with [`publish`].

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// An Event to publish: CamelCase reason, a sentence, Warning or Normal.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub reason: String,
    pub message: String,
    pub warning: bool,
}

/// The Event recorder of a controller: reports as the operator, with the pod's name.
pub fn recorder(client: kube::Client) -> Recorder {
    Recorder::new(
        client,
        Reporter {
            controller: crate::FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    )
}

/// Publishes `notes` on `object` (messages cut to 1000 characters); a failure is logged,
/// never fatal: Events are announcements, status is the record.
pub async fn publish(recorder: &Recorder, object: &ObjectReference, action: &str, notes: &[Note]) {
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
