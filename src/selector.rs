//! Label selectors as plain values (kube-core's `Selector`): for the pure cores, which
//! import no Kubernetes client.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

/// Does `s` select these labels? An unusable selector, or one that selects everything,
/// selects nothing.
pub fn selects_some(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    match Selector::try_from(s.clone()) {
        Ok(s) => !s.selects_all() && s.matches(labels),
        Err(_) => false,
    }
}

/// Does `s` select these labels, as the API server's `labelSelector` does (an empty
/// selector selects everything)? An unusable selector selects nothing.
pub fn matches(s: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    Selector::try_from(s.clone()).is_ok_and(|s| s.matches(labels))
}

/// The selector can be used (its operators and values are valid).
pub fn valid(s: &LabelSelector) -> bool {
    Selector::try_from(s.clone()).is_ok()
}

/// The selector names no label and no expression.
pub fn is_empty(s: &LabelSelector) -> bool {
    s.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && s.match_expressions.as_ref().is_none_or(|m| m.is_empty())
}

/// The selector as the API's `labelSelector` query ("" for an unusable one: validate first).
pub fn query(s: &LabelSelector) -> String {
    Selector::try_from(s.clone())
        .map(|s| s.to_string())
        .unwrap_or_default()
}
