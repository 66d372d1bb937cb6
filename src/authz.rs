//! Who wrote a DrillSchedule's or CanaryPolicy's spec, and what the operator may do for
//! them. Plain values: the cores and the webhook decide from them; the edge (`k8s/`) asks
//! the API server's SubjectAccessReview.
//!
//! The admission webhook records the author of a spec from the admission request's user
//! (authenticated by the API server, never typed) in three annotations: the user, the
//! groups, and a proof, an HMAC-SHA256 under a key only the operator holds, over the kind,
//! the namespace, the author and the spec. A spec changed while the webhook was not reached
//! no longer matches its proof, so its author is unknown and it does not act. A user who
//! types the annotations cannot make the proof.

use std::collections::BTreeMap;
use std::fmt;

use ring::hmac;
use serde_json::{Value, json};

use crate::api::names::{
    AUTHOR_ANNOTATION, AUTHOR_GROUPS_ANNOTATION, AUTHOR_PROOF_ANNOTATION, RUN_NOW_ANNOTATION,
};

/// The form of the proof; a new form gets a new prefix and old proofs stop matching.
const PROOF_VERSION: &str = "v1";

/// A user as the API server authenticated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub username: String,
    pub groups: Vec<String>,
}

/// One thing the operator does to a namespace's objects on behalf of an author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    /// API group: "" for the core group, "apps", ...
    pub group: &'static str,
    pub resource: &'static str,
    pub namespace: String,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.namespace.is_empty() {
            true => write!(f, "{} {} (cluster-wide)", self.verb, self.resource),
            false => write!(f, "{} {} in {}", self.verb, self.resource, self.namespace),
        }
    }
}

/// Whether the operator may act for an object's author.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Verdict {
    /// The author may do everything the action needs (or authors are not checked).
    #[default]
    Allowed,
    /// Why not: a sentence for status, naming the author and what they may not do.
    Denied(String),
}

impl Verdict {
    pub fn denied(&self) -> Option<&str> {
        match self {
            Self::Allowed => None,
            Self::Denied(why) => Some(why),
        }
    }
}

/// The sentence when `author` may not do `p`.
pub fn may_not(author: &Author, p: &Permission) -> String {
    format!("author {} may not {p}", author.username)
}

/// Whose rights the operator acts with.
#[derive(Clone)]
pub enum Authors {
    /// One team per cluster (`--single-tenant`): the operator acts with its own rights.
    Unchecked,
    /// Every action is checked against the proven author of the object's spec.
    Checked(Key),
}

impl fmt::Debug for Authors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unchecked => f.write_str("Unchecked"),
            Self::Checked(_) => f.write_str("Checked"),
        }
    }
}

/// Who authored an object's spec, as far as the operator can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// Authors are not checked.
    Unchecked,
    /// The proven author.
    Author(Author),
    /// No proven author: why, as a sentence for status.
    Unknown(String),
}

/// The sentence for an object without a proven author.
pub const UNKNOWN: &str = "no author of this spec is known: it was created or changed while the operator's admission webhook was not reached (or before the webhook recorded authors); apply or annotate it again while the operator runs to record its author";

/// The operator's secret key for proofs (kept in a Secret of its namespace).
#[derive(Clone)]
pub struct Key(hmac::Key);

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// At least 32 bytes, or None.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= 32).then(|| Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    fn message(kind: &str, namespace: &str, author: &Author, spec: &Value) -> Vec<u8> {
        let m = json!([
            PROOF_VERSION,
            kind,
            namespace,
            author.username,
            author.groups,
            spec
        ]);
        serde_json::to_vec(&m).unwrap_or_default()
    }

    /// The proof that `author` wrote `spec` of a `kind` in `namespace`.
    pub fn prove(&self, kind: &str, namespace: &str, author: &Author, spec: &Value) -> String {
        let tag = hmac::sign(&self.0, &Self::message(kind, namespace, author, spec));
        format!("{PROOF_VERSION}:{}", hex(tag.as_ref()))
    }

    /// A proof of `message` (any JSON value; the caller puts what it binds in it).
    pub fn sign(&self, message: &Value) -> String {
        let bytes = serde_json::to_vec(&json!([PROOF_VERSION, message])).unwrap_or_default();
        let tag = hmac::sign(&self.0, &bytes);
        format!("{PROOF_VERSION}:{}", hex(tag.as_ref()))
    }

    /// Whether `proof` is this key's proof of `message` ([`Self::sign`]).
    pub fn verifies(&self, message: &Value, proof: &str) -> bool {
        let bytes = serde_json::to_vec(&json!([PROOF_VERSION, message])).unwrap_or_default();
        proof
            .strip_prefix(&format!("{PROOF_VERSION}:"))
            .and_then(unhex)
            .is_some_and(|tag| hmac::verify(&self.0, &bytes, &tag).is_ok())
    }

    /// The author the annotations prove for `spec`, or why there is none.
    pub fn authority(
        &self,
        kind: &str,
        namespace: &str,
        annotations: &BTreeMap<String, String>,
        spec: &Value,
    ) -> Authority {
        let Some(author) = recorded(annotations) else {
            return Authority::Unknown(UNKNOWN.into());
        };
        let proof = annotations
            .get(AUTHOR_PROOF_ANNOTATION)
            .and_then(|p| p.strip_prefix(&format!("{PROOF_VERSION}:")))
            .and_then(unhex);
        let msg = Self::message(kind, namespace, &author, spec);
        match proof {
            Some(tag) if hmac::verify(&self.0, &msg, &tag).is_ok() => Authority::Author(author),
            _ => Authority::Unknown(UNKNOWN.into()),
        }
    }
}

impl Authors {
    /// The authority over an object: its proven author when authors are checked.
    pub fn of(
        &self,
        kind: &str,
        namespace: &str,
        annotations: Option<&BTreeMap<String, String>>,
        spec: &Value,
    ) -> Authority {
        match self {
            Self::Unchecked => Authority::Unchecked,
            Self::Checked(key) => {
                let empty = BTreeMap::new();
                key.authority(kind, namespace, annotations.unwrap_or(&empty), spec)
            }
        }
    }
}

/// The author the annotations name (proven or not).
fn recorded(annotations: &BTreeMap<String, String>) -> Option<Author> {
    let username = annotations
        .get(AUTHOR_ANNOTATION)
        .filter(|u| !u.is_empty())?;
    let groups = match annotations.get(AUTHOR_GROUPS_ANNOTATION) {
        Some(g) => serde_json::from_str(g).ok()?,
        None => Vec::new(),
    };
    Some(Author {
        username: username.clone(),
        groups,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// An object of a kind whose author is recorded, as the admission request has it.
#[derive(Debug, Clone, Copy)]
pub struct Seen<'a> {
    pub annotations: &'a BTreeMap<String, String>,
    pub spec: &'a Value,
}

/// The JSON Patch the webhook makes to a create (`old` None) or update of a `kind` in
/// `namespace` sent by `requester` (None: the request named no user). Empty: nothing to
/// change.
///
/// - A create, a spec change, a new `run-now` value, or any change of an object whose
///   author is unknown records the requester as the author (whatever the request typed in
///   the annotations).
/// - Anything else keeps the author the old object had: edits of the annotations are undone.
/// - The operator itself (`operator`) is never recorded: its own updates (finalizers) keep
///   what the object had.
pub fn record(
    key: &Key,
    kind: &str,
    namespace: &str,
    requester: Option<&Author>,
    operator: Option<&str>,
    old: Option<Seen<'_>>,
    new: Seen<'_>,
) -> Vec<Value> {
    let is_operator = requester.is_some_and(|r| Some(r.username.as_str()) == operator);
    let keep = || {
        old.map(|o| author_annotations(o.annotations))
            .unwrap_or_default()
    };
    let want: BTreeMap<&str, String> = match requester {
        Some(r) if !is_operator && !r.username.is_empty() => {
            let authors_anew = match old {
                None => true,
                Some(o) => {
                    o.spec != new.spec
                        || o.annotations.get(RUN_NOW_ANNOTATION)
                            != new.annotations.get(RUN_NOW_ANNOTATION)
                        || !matches!(
                            key.authority(kind, namespace, o.annotations, o.spec),
                            Authority::Author(_)
                        )
                }
            };
            if authors_anew {
                BTreeMap::from([
                    (AUTHOR_ANNOTATION, r.username.clone()),
                    (
                        AUTHOR_GROUPS_ANNOTATION,
                        serde_json::to_string(&r.groups).unwrap_or_default(),
                    ),
                    (
                        AUTHOR_PROOF_ANNOTATION,
                        key.prove(kind, namespace, r, new.spec),
                    ),
                ])
            } else {
                keep()
            }
        }
        _ => keep(),
    };
    annotation_patch(new.annotations, &want)
}

fn author_annotations(a: &BTreeMap<String, String>) -> BTreeMap<&'static str, String> {
    [
        AUTHOR_ANNOTATION,
        AUTHOR_GROUPS_ANNOTATION,
        AUTHOR_PROOF_ANNOTATION,
    ]
    .into_iter()
    .filter_map(|k| a.get(k).map(|v| (k, v.clone())))
    .collect()
}

/// Ops that make the three author annotations of `have` exactly `want`.
fn annotation_patch(have: &BTreeMap<String, String>, want: &BTreeMap<&str, String>) -> Vec<Value> {
    let mut ops = Vec::new();
    if have.is_empty() && !want.is_empty() {
        ops.push(json!({"op": "add", "path": "/metadata/annotations", "value": {}}));
    }
    for k in [
        AUTHOR_ANNOTATION,
        AUTHOR_GROUPS_ANNOTATION,
        AUTHOR_PROOF_ANNOTATION,
    ] {
        let path = format!(
            "/metadata/annotations/{}",
            k.replace('~', "~0").replace('/', "~1")
        );
        match (have.get(k), want.get(k)) {
            (a, b) if a == b => {}
            (Some(_), None) => ops.push(json!({"op": "remove", "path": path})),
            (_, Some(v)) => ops.push(json!({"op": "add", "path": path, "value": v})),
            (None, None) => {}
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        Key::from_bytes(&[7u8; 32]).unwrap()
    }

    fn dev() -> Author {
        Author {
            username: "system:serviceaccount:tenant-a:dev".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
        }
    }

    const OPERATOR: &str = "system:serviceaccount:ops:maturity-operator";

    /// The annotations after applying `ops` to `have`.
    fn applied(have: &BTreeMap<String, String>, ops: Vec<Value>) -> BTreeMap<String, String> {
        let mut obj = json!({"metadata": {}});
        if !have.is_empty() {
            obj["metadata"]["annotations"] = serde_json::to_value(have).unwrap();
        }
        let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
        json_patch::patch(&mut obj, &patch).unwrap();
        serde_json::from_value(obj["metadata"]["annotations"].clone()).unwrap_or_default()
    }

    fn create(
        by: &Author,
        typed: BTreeMap<String, String>,
        spec: &Value,
    ) -> BTreeMap<String, String> {
        let ops = record(
            &key(),
            "DrillSchedule",
            "tenant-a",
            Some(by),
            Some(OPERATOR),
            None,
            Seen {
                annotations: &typed,
                spec,
            },
        );
        applied(&typed, ops)
    }

    #[test]
    fn a_create_records_the_requester_with_a_proof_that_verifies() {
        let spec = json!({"schedule": "@daily"});
        let a = create(&dev(), BTreeMap::new(), &spec);
        assert_eq!(a[AUTHOR_ANNOTATION], "system:serviceaccount:tenant-a:dev");
        assert_eq!(
            a[AUTHOR_GROUPS_ANNOTATION],
            r#"["system:serviceaccounts","system:authenticated"]"#
        );
        assert!(a[AUTHOR_PROOF_ANNOTATION].starts_with("v1:"));
        assert_eq!(
            key().authority("DrillSchedule", "tenant-a", &a, &spec),
            Authority::Author(dev())
        );
    }

    #[test]
    fn typed_author_annotations_are_overwritten_on_create() {
        let spec = json!({"schedule": "@daily"});
        let typed = BTreeMap::from([
            (AUTHOR_ANNOTATION.to_string(), "system:admin".to_string()),
            (
                AUTHOR_GROUPS_ANNOTATION.to_string(),
                r#"["system:masters"]"#.to_string(),
            ),
            (AUTHOR_PROOF_ANNOTATION.to_string(), "v1:00".to_string()),
        ]);
        let a = create(&dev(), typed, &spec);
        assert_eq!(a[AUTHOR_ANNOTATION], "system:serviceaccount:tenant-a:dev");
        assert!(!a[AUTHOR_GROUPS_ANNOTATION].contains("system:masters"));
    }

    #[test]
    fn a_typed_or_copied_proof_does_not_verify() {
        let spec = json!({"schedule": "@daily"});
        let good = create(&dev(), BTreeMap::new(), &spec);
        let k = key();
        // Another spec under the same proof.
        assert!(matches!(
            k.authority(
                "DrillSchedule",
                "tenant-a",
                &good,
                &json!({"schedule": "@hourly"})
            ),
            Authority::Unknown(_)
        ));
        // Another namespace, another kind.
        assert!(matches!(
            k.authority("DrillSchedule", "tenant-b", &good, &spec),
            Authority::Unknown(_)
        ));
        assert!(matches!(
            k.authority("CanaryPolicy", "tenant-a", &good, &spec),
            Authority::Unknown(_)
        ));
        // Another user or more groups under the same proof.
        let mut forged = good.clone();
        forged.insert(AUTHOR_ANNOTATION.into(), "system:admin".into());
        assert!(matches!(
            k.authority("DrillSchedule", "tenant-a", &forged, &spec),
            Authority::Unknown(_)
        ));
        let mut forged = good.clone();
        forged.insert(
            AUTHOR_GROUPS_ANNOTATION.into(),
            r#"["system:masters"]"#.into(),
        );
        assert!(matches!(
            k.authority("DrillSchedule", "tenant-a", &forged, &spec),
            Authority::Unknown(_)
        ));
        // Another key (another cluster's operator).
        let other = Key::from_bytes(&[8u8; 32]).unwrap();
        assert!(matches!(
            other.authority("DrillSchedule", "tenant-a", &good, &spec),
            Authority::Unknown(_)
        ));
        // Nothing recorded; garbage.
        assert_eq!(
            k.authority("DrillSchedule", "tenant-a", &BTreeMap::new(), &spec),
            Authority::Unknown(UNKNOWN.into())
        );
        let mut garbage = good;
        garbage.insert(AUTHOR_PROOF_ANNOTATION.into(), "v1:zz".into());
        assert!(matches!(
            k.authority("DrillSchedule", "tenant-a", &garbage, &spec),
            Authority::Unknown(_)
        ));
    }

    fn update(
        by: &Author,
        old: (&BTreeMap<String, String>, &Value),
        new: (BTreeMap<String, String>, &Value),
    ) -> BTreeMap<String, String> {
        let ops = record(
            &key(),
            "DrillSchedule",
            "tenant-a",
            Some(by),
            Some(OPERATOR),
            Some(Seen {
                annotations: old.0,
                spec: old.1,
            }),
            Seen {
                annotations: &new.0,
                spec: new.1,
            },
        );
        applied(&new.0, ops)
    }

    fn admin() -> Author {
        Author {
            username: "alice".into(),
            groups: vec!["sre".into()],
        }
    }

    #[test]
    fn a_spec_change_records_the_new_author() {
        let (v1, v2) = (
            json!({"schedule": "@daily"}),
            json!({"schedule": "@hourly"}),
        );
        let old = create(&admin(), BTreeMap::new(), &v1);
        let a = update(&dev(), (&old, &v1), (old.clone(), &v2));
        assert_eq!(
            key().authority("DrillSchedule", "tenant-a", &a, &v2),
            Authority::Author(dev())
        );
    }

    #[test]
    fn a_metadata_change_keeps_the_author_and_undoes_edits_of_it() {
        let v1 = json!({"schedule": "@daily"});
        let old = create(&admin(), BTreeMap::new(), &v1);
        let mut edited = old.clone();
        edited.insert("team".into(), "a".into());
        edited.insert(AUTHOR_ANNOTATION.into(), "mallory".into());
        edited.remove(AUTHOR_PROOF_ANNOTATION);
        let a = update(&dev(), (&old, &v1), (edited, &v1));
        assert_eq!(a[AUTHOR_ANNOTATION], "alice");
        assert_eq!(a["team"], "a");
        assert_eq!(
            key().authority("DrillSchedule", "tenant-a", &a, &v1),
            Authority::Author(admin())
        );
    }

    #[test]
    fn a_new_run_now_is_an_action_of_whoever_sets_it() {
        let v1 = json!({"schedule": "@daily"});
        let old = create(&admin(), BTreeMap::new(), &v1);
        let mut now = old.clone();
        now.insert(RUN_NOW_ANNOTATION.into(), "1".into());
        let a = update(&dev(), (&old, &v1), (now, &v1));
        assert_eq!(a[AUTHOR_ANNOTATION], "system:serviceaccount:tenant-a:dev");
    }

    #[test]
    fn any_change_by_a_user_records_an_author_where_none_is_proven() {
        let v1 = json!({"schedule": "@daily"});
        let unknown = BTreeMap::from([("team".to_string(), "a".to_string())]);
        let a = update(&dev(), (&unknown, &v1), (unknown.clone(), &v1));
        assert_eq!(
            key().authority("DrillSchedule", "tenant-a", &a, &v1),
            Authority::Author(dev())
        );
    }

    #[test]
    fn the_operators_own_updates_never_make_it_the_author() {
        let v1 = json!({"schedule": "@daily"});
        let op = Author {
            username: OPERATOR.into(),
            groups: vec!["system:serviceaccounts".into()],
        };
        // Unknown stays unknown.
        let unknown = BTreeMap::new();
        assert!(update(&op, (&unknown, &v1), (unknown.clone(), &v1)).is_empty());
        // A proven author stays.
        let old = create(&admin(), BTreeMap::new(), &v1);
        assert_eq!(update(&op, (&old, &v1), (old.clone(), &v1)), old);
        // Nor does a create by it (or by nobody) record anyone.
        assert!(create(&op, BTreeMap::new(), &v1).is_empty());
    }

    #[test]
    fn a_permission_reads_as_a_sentence() {
        let p = Permission {
            verb: "patch",
            group: "",
            resource: "services",
            namespace: "tenant-a".into(),
        };
        assert_eq!(
            may_not(&dev(), &p),
            "author system:serviceaccount:tenant-a:dev may not patch services in tenant-a"
        );
    }
}
