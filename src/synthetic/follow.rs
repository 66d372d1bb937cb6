//! Plays the application of a namespace's Deployments: every ReplicaSet's ready pods
//! serve 5 requests a second each under its `pod_template_hash` (plus `namespace` and
//! `deployment` labels), failing at the ratio its image is given. The tests and the demo
//! use it to show good and bad versions to a canary analysis.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use super::{SyntheticExporter, Traffic, labels};

/// How each image behaves: the first rule whose pattern the image contains decides;
/// `None` means the version exports nothing at all. Unmatched images serve without errors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behaviour {
    pub rules: Vec<(String, Option<f64>)>,
}

impl Behaviour {
    pub fn error_ratio(&self, image: &str) -> Option<f64> {
        self.rules
            .iter()
            .find(|(pattern, _)| image.contains(pattern.as_str()))
            .map(|(_, r)| *r)
            .unwrap_or(Some(0.0))
    }

    /// Parses `pattern=ratio` or `pattern=none`.
    pub fn parse_rule(s: &str) -> Result<(String, Option<f64>), String> {
        let (pattern, ratio) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?}: expected image-pattern=error-ratio, e.g. :bad=0.5"))?;
        let ratio = match ratio {
            "none" => None,
            r => Some(
                r.parse::<f64>()
                    .ok()
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| format!("{s:?}: the error ratio must be in [0, 1] or none"))?,
            ),
        };
        Ok((pattern.to_string(), ratio))
    }
}

/// Follows the ReplicaSets of `namespace` every 250 ms until the task is dropped.
pub async fn follow(
    client: Client,
    namespace: String,
    exporter: std::sync::Arc<SyntheticExporter>,
    behaviour: Behaviour,
) {
    let rss: Api<ReplicaSet> = Api::namespaced(client, &namespace);
    loop {
        match rss.list(&ListParams::default()).await {
            Ok(list) => {
                for rs in list.items {
                    apply(&exporter, &namespace, &rs, &behaviour);
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing ReplicaSets failed"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn apply(exporter: &SyntheticExporter, namespace: &str, rs: &ReplicaSet, behaviour: &Behaviour) {
    let Some(hash) = rs.labels().get("pod-template-hash").cloned() else {
        return;
    };
    let deployment = rs
        .owner_references()
        .first()
        .map(|o| o.name.clone())
        .unwrap_or_default();
    let image = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let ready = rs
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    let l = labels(&[
        ("namespace", namespace),
        ("deployment", &deployment),
        ("pod_template_hash", &hash),
    ]);
    match behaviour.error_ratio(&image) {
        Some(err) if ready > 0 => {
            exporter.set_traffic(l, Traffic::steady(5.0 * ready as f64, err, 0.05))
        }
        _ => exporter.stop_traffic(&l),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_pick_the_first_match_and_default_to_no_errors() {
        let b = Behaviour {
            rules: vec![
                Behaviour::parse_rule(":bad=0.5").unwrap(),
                Behaviour::parse_rule(":silent=none").unwrap(),
            ],
        };
        assert_eq!(b.error_ratio("shop/web:bad"), Some(0.5));
        assert_eq!(b.error_ratio("shop/web:silent"), None);
        assert_eq!(b.error_ratio("shop/web:v2"), Some(0.0));
        assert!(Behaviour::parse_rule(":bad").is_err());
        assert!(Behaviour::parse_rule(":bad=2").is_err());
    }
}
