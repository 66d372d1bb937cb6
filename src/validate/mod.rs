//! `maturity-operator validate`: manifests checked offline, as the cluster would check a
//! create of them, in the API server's words. For each document of the four kinds:
//!
//! 1. what the API server does before anything is checked: unknown fields pruned (noted,
//!    not refused), `status` dropped (a create ignores it), non-nullable nulls dropped,
//!    defaults set;
//! 2. the admission webhook's checks that need no cluster ([`admission`]): the mutating
//!    webhook runs before validation, so its refusal is the only answer, as from the API
//!    server;
//! 3. the object's metadata (name, namespace), the CRD's OpenAPI v3 schema ([`schema`])
//!    and, unless an earlier error blocks them as it does in the API server, every
//!    `x-kubernetes-validations` rule ([`cel`]).
//!
//! Refusals are worded as `kubectl apply` shows them (see [`field`]). Pure: no API
//! server, no clock.

pub mod admission;
pub mod cel;
pub mod field;
pub mod schema;

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::Value as Json;

use crate::prom::enforce::Tenancy;
use field::{BadValue, FieldError, Path};

/// Where and how documents are checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The namespace of documents that name none (as `kubectl apply -n`).
    pub namespace: String,
    /// How the webhook scopes users' queries (as the operator's flags).
    pub tenancy: Tenancy,
}

/// What became of one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The cluster would accept it.
    Valid,
    /// The cluster would refuse it: `lines`, one per error, each a sentence of the API
    /// server (`<Kind>.<group> "<name>" is invalid: <field error>`, or the webhook's
    /// denial); `message`, the whole message of the API server's answer.
    Refused { lines: Vec<String>, message: String },
    /// Not checked: not one of the operator's kinds (why).
    Skipped(String),
}

/// One document of a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub kind: String,
    pub name: String,
    pub verdict: Verdict,
    /// Fields the API server would drop as unknown (kubectl's `--validate=strict`
    /// refuses them before they get there).
    pub pruned: Vec<String>,
}

/// A manifest that is not YAML.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("not YAML: {0}")]
pub struct ParseError(pub String);

/// One kind's CRD: its group, served versions and schema.
struct Kind {
    group: String,
    versions: BTreeMap<String, JSONSchemaProps>,
}

/// The four CRDs, as the operator generates them, and their rules compiled once.
pub struct Validator {
    kinds: BTreeMap<String, Kind>,
    rules: cel::Rules,
}

impl Default for Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Validator {
    pub fn new() -> Self {
        let mut kinds = BTreeMap::new();
        for (_, crd) in crate::api::crds() {
            let versions = crd
                .spec
                .versions
                .iter()
                .filter(|v| v.served)
                .filter_map(|v| {
                    let schema = v.schema.as_ref()?.open_api_v3_schema.clone()?;
                    Some((v.name.clone(), schema))
                })
                .collect();
            kinds.insert(
                crd.spec.names.kind.clone(),
                Kind {
                    group: crd.spec.group.clone(),
                    versions,
                },
            );
        }
        Validator {
            kinds,
            rules: cel::Rules::new(),
        }
    }

    /// Every document of a YAML stream (empty documents left out).
    pub fn text(&mut self, yaml: &str, settings: &Settings) -> Result<Vec<Document>, ParseError> {
        // As kubectl reads YAML (sigs.k8s.io/yaml on go-yaml v2, YAML 1.1): `yes`/`y`/`on`
        // are booleans, `010` is octal, a repeated key keeps its last value.
        let options = serde_saphyr::options! {
            duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
            legacy_octal_numbers: true,
            with_snippet: false,
        };
        let docs: Vec<Json> = serde_saphyr::from_multiple_with_options(yaml, options)
            .map_err(|e| ParseError(e.to_string().trim_start_matches("error: ").to_string()))?;
        Ok(docs
            .into_iter()
            .filter(|d| !d.is_null())
            .map(|d| self.document(d, settings))
            .collect())
    }

    /// One document, as the cluster would take a create of it.
    pub fn document(&mut self, mut object: Json, settings: &Settings) -> Document {
        let text = |v: Option<&Json>| v.and_then(Json::as_str).unwrap_or_default().to_string();
        let kind = text(object.get("kind"));
        let api_version = text(object.get("apiVersion"));
        let mut name = text(object.pointer("/metadata/name"));
        let generate = text(object.pointer("/metadata/generateName"));
        if name.is_empty()
            && !generate.is_empty()
            && let Some(meta) = object.get_mut("metadata").and_then(Json::as_object_mut)
        {
            // The API server names it before validating it: the prefix and 5 random
            // characters (here `xxxxx`).
            name = format!("{generate}xxxxx");
            meta.insert("name".into(), Json::from(name.clone()));
        }
        let mut doc = Document {
            kind: kind.clone(),
            name: name.clone(),
            verdict: Verdict::Valid,
            pruned: Vec::new(),
        };
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let Some(k) = self.kinds.get(&kind).filter(|k| k.group == group) else {
            doc.verdict = Verdict::Skipped(if kind.is_empty() || api_version.is_empty() {
                "not a Kubernetes object (no apiVersion or kind)".to_string()
            } else {
                format!("{api_version} {kind} is not a kind of the operator")
            });
            return doc;
        };
        let Some(root) = k.versions.get(version).cloned() else {
            let line = format!("no matches for kind \"{kind}\" in version \"{api_version}\"");
            doc.verdict = Verdict::Refused {
                lines: vec![line.clone()],
                message: line,
            };
            return doc;
        };
        let qualified = format!("{kind}.{}", k.group);
        normalize_numbers(&mut object);
        if let Some(map) = object.as_object_mut() {
            // A create ignores status: the status subresource writes it.
            map.remove("status");
        }
        schema::prune(&mut object, &root, &Path::root(), true, &mut doc.pruned);
        schema::prune_nulls(&mut object, &root);
        schema::default(&mut object, &root);
        let namespace = match object.pointer("/metadata/namespace").and_then(Json::as_str) {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => settings.namespace.clone(),
        };
        if let Some(hook) = admission::hook(&kind)
            && let Some(why) = admission::refusal(&kind, &object, &namespace, &settings.tenancy)
        {
            let line = format!("admission webhook \"{hook}\" denied the request: {why}");
            doc.verdict = Verdict::Refused {
                lines: vec![line.clone()],
                message: line,
            };
            return doc;
        }
        let mut errors = metadata_errors(&object, &namespace);
        errors.extend(schema::validate(&object, &root));
        if errors.iter().any(blocks_rules) {
            errors.push(FieldError::invalid(
                &Path::root().to_string(),
                BadValue::Null,
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            self.rules
                .check(&object, &root, &Path::root(), true, &mut errors);
        }
        if !errors.is_empty() {
            let head = format!("{qualified} {} is invalid", field::go_quote(&name));
            let lines = field::dedup(&errors)
                .into_iter()
                .map(|e| format!("{head}: {e}"))
                .collect();
            doc.verdict = Verdict::Refused {
                lines,
                message: field::invalid_message(&qualified, &name, &errors),
            };
        }
        doc
    }
}

/// The API server's refusals of every document of `yaml`, one sentence a line (none:
/// everything would be accepted); for a test to compare with a cluster's answers.
pub fn refusal_lines(
    yaml: &str,
    namespace: &str,
    tenancy: &Tenancy,
) -> Result<Vec<String>, ParseError> {
    let settings = Settings {
        namespace: namespace.to_string(),
        tenancy: tenancy.clone(),
    };
    Ok(Validator::new()
        .text(yaml, &settings)?
        .into_iter()
        .flat_map(|d| match d.verdict {
            Verdict::Refused { lines, .. } => lines,
            _ => Vec::new(),
        })
        .collect())
}

/// An error after which the API server runs no rule (`hasBlockingErr`): a missing or
/// unsupported value, one too long, too many items, a wrong type.
fn blocks_rules(e: &FieldError) -> bool {
    use field::ErrorType::*;
    matches!(
        e.kind,
        NotSupported | Required | TooLong | TooMany | TypeInvalid
    )
}

/// Numbers as the API server holds them after kubectl sent the manifest as JSON: a
/// float with no fraction is an int64 (Go prints `5.0` as `5`), an integer beyond int64
/// a float64.
fn normalize_numbers(v: &mut Json) {
    match v {
        Json::Number(n) => {
            if let Some(f) = n.as_f64()
                && n.as_i64().is_none()
            {
                let integral = n.is_f64() && f.fract() == 0.0 && f.abs() < 9.2e18;
                *v = if integral {
                    Json::from(f as i64)
                } else {
                    serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
                };
            }
        }
        Json::Array(list) => list.iter_mut().for_each(normalize_numbers),
        Json::Object(map) => map.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// `ValidateObjectMetaAccessor` of a namespaced custom resource: a name that is a DNS
/// subdomain, a namespace that is a DNS label (labels, annotations and the rest of the
/// metadata are not checked offline).
fn metadata_errors(object: &Json, namespace: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let meta = Path::root().child("metadata");
    let text = |k: &str| {
        object
            .pointer(&format!("/metadata/{k}"))
            .and_then(Json::as_str)
            .unwrap_or_default()
    };
    let (name, generate) = (text("name"), text("generateName"));
    if !generate.is_empty() {
        // A prefix may end in a dash: the generated suffix follows it.
        let masked = match generate.strip_suffix('-') {
            Some(p) if generate.len() > 1 => format!("{p}a"),
            _ => generate.to_string(),
        };
        for msg in dns1123_subdomain(&masked) {
            errors.push(FieldError::invalid(
                &meta.child("generateName").to_string(),
                BadValue::Str(generate.to_string()),
                msg,
            ));
        }
    }
    if name.is_empty() {
        errors.push(FieldError::required(
            &meta.child("name").to_string(),
            "name or generateName is required",
        ));
    } else {
        for msg in dns1123_subdomain(name) {
            errors.push(FieldError::invalid(
                &meta.child("name").to_string(),
                BadValue::Str(name.to_string()),
                msg,
            ));
        }
    }
    for msg in dns1123_label(namespace) {
        errors.push(FieldError::invalid(
            &meta.child("namespace").to_string(),
            BadValue::Str(namespace.to_string()),
            msg,
        ));
    }
    errors
}

const LABEL: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";

/// `IsDNS1123Subdomain`'s messages.
fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let format = format!("{LABEL}(\\.{LABEL})*");
    let re = regex::Regex::new(&format!("^{format}$")).expect("regex");
    if !re.is_match(value) {
        errs.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{format}')"
        ));
    }
    errs
}

/// `IsDNS1123Label`'s messages.
fn dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    let re = regex::Regex::new(&format!("^{LABEL}$")).expect("regex");
    if !re.is_match(value) {
        errs.push(format!(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{LABEL}')"
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            namespace: "shop".into(),
            tenancy: Tenancy::default(),
        }
    }

    fn lines(yaml: &str) -> Vec<String> {
        refusal_lines(yaml, "shop", &Tenancy::default()).unwrap()
    }

    const RTT: &str = "apiVersion: maturity.sre.dev/v1alpha1
kind: ResponseTimeTarget
metadata:
  name: x
spec:
  service: checkout
  requestClass: interactive
  objective: 99.5
  window: 28d
  indicator:
    ratio:
      good: a_total
      total: b_total
";

    #[test]
    fn a_valid_target_is_accepted_and_unknown_fields_noted() {
        let mut v = Validator::new();
        let docs = v
            .text(
                &format!("{RTT}  typo: 1\nstatus:\n  attainment: 1\n"),
                &settings(),
            )
            .unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].verdict, Verdict::Valid, "{docs:?}");
        assert_eq!(docs[0].pruned, ["spec.typo"]);
    }

    #[test]
    fn a_failed_rule_is_worded_as_the_api_server_words_it() {
        let got = lines(&RTT.replace("window: 28d", "window: 0d"));
        assert_eq!(
            got,
            [
                r#"ResponseTimeTarget.maturity.sre.dev "x" is invalid: spec.window: Invalid value: "string": window must be longer than zero"#
            ]
        );
    }

    #[test]
    fn a_schema_error_blocks_the_rules() {
        let got = lines(
            &RTT.replace("  service: checkout\n", "")
                .replace("window: 28d", "window: 0d"),
        );
        assert_eq!(
            got,
            [
                r#"ResponseTimeTarget.maturity.sre.dev "x" is invalid: spec.service: Required value"#,
                r#"ResponseTimeTarget.maturity.sre.dev "x" is invalid: <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"#,
            ]
        );
    }

    #[test]
    fn the_whole_message_lists_every_error() {
        let mut v = Validator::new();
        let yaml = RTT
            .replace("service: checkout", "service: ''")
            .replace("window: 28d", "window: 0d");
        let doc = v.text(&yaml, &settings()).unwrap().remove(0);
        let Verdict::Refused { message, lines } = doc.verdict else {
            panic!("{doc:?}")
        };
        assert_eq!(lines.len(), 2);
        assert_eq!(
            message,
            r#"ResponseTimeTarget.maturity.sre.dev "x" is invalid: [spec.service: Invalid value: "": spec.service in body should be at least 1 chars long, spec.window: Invalid value: "string": window must be longer than zero]"#
        );
    }

    #[test]
    fn other_kinds_and_empty_documents_are_skipped() {
        let mut v = Validator::new();
        let docs = v
            .text(
                "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n",
                &settings(),
            )
            .unwrap();
        assert_eq!(docs.len(), 1);
        assert!(matches!(docs[0].verdict, Verdict::Skipped(_)), "{docs:?}");
        assert!(v.text("a: [", &settings()).is_err());
    }

    #[test]
    fn yaml_is_read_as_kubectl_reads_it() {
        let mut v = Validator::new();
        // go-yaml v2: `y` is true (a string field refuses it), `010` is 8, the last of
        // two equal keys wins.
        let yaml = RTT
            .replace("good: a_total", "good: y")
            .replace("objective: 99.5", "objective: 99.5\n  objective: 010");
        let doc = v.text(&yaml, &settings()).unwrap().remove(0);
        let Verdict::Refused { lines, .. } = doc.verdict else {
            panic!("{doc:?}")
        };
        assert_eq!(
            lines[0],
            r#"ResponseTimeTarget.maturity.sre.dev "x" is invalid: spec.indicator.ratio.good: Invalid value: "boolean": spec.indicator.ratio.good in body must be of type string: "boolean""#
        );
        // 0144 is 100.
        let yaml = RTT.replace("objective: 99.5", "objective: 99.5\n  objective: 0144");
        let got = refusal_lines(&yaml, "shop", &Tenancy::default()).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got[0]
                .ends_with("objective must be a percentage strictly between 0 and 100, e.g. 99.5"),
            "{got:?}"
        );
    }

    #[test]
    fn a_version_that_is_not_served_is_refused() {
        let got = lines(&RTT.replace("v1alpha1", "v1"));
        assert_eq!(
            got,
            [r#"no matches for kind "ResponseTimeTarget" in version "maturity.sre.dev/v1""#]
        );
    }

    #[test]
    fn names_must_be_subdomains() {
        let got = lines(&RTT.replace("name: x", "name: X_1"));
        assert_eq!(got.len(), 1);
        assert!(
            got[0]
                .contains(r#"metadata.name: Invalid value: "X_1": a lowercase RFC 1123 subdomain"#),
            "{got:?}"
        );
        assert_eq!(
            lines(&RTT.replace("name: x", "name: ''")),
            [
                r#"ResponseTimeTarget.maturity.sre.dev "" is invalid: metadata.name: Required value: name or generateName is required"#,
                r#"ResponseTimeTarget.maturity.sre.dev "" is invalid: <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"#,
            ]
        );
        // A generated name is given before validation.
        assert!(lines(&RTT.replace("name: x", "generateName: x-")).is_empty());
    }

    #[test]
    fn every_rule_of_the_crds_compiles_and_calls_only_known_functions() {
        fn walk(s: &JSONSchemaProps, out: &mut Vec<String>) {
            for r in s.x_kubernetes_validations.iter().flatten() {
                out.push(r.rule.clone());
                out.extend(r.message_expression.clone());
            }
            for p in s.properties.iter().flat_map(|p| p.values()) {
                walk(p, out);
            }
            if let Some(i) = schema::items(s) {
                walk(i, out);
            }
            if let Some(a) = schema::additional(s) {
                walk(a, out);
            }
        }
        let v = Validator::new();
        let mut rules = Vec::new();
        for k in v.kinds.values() {
            for s in k.versions.values() {
                walk(s, &mut rules);
            }
        }
        assert!(rules.len() >= 100, "{} rules", rules.len());
        let env = {
            let mut env = ::cel::Env::stdlib();
            env.add_extension(::cel::extensions::strings).unwrap();
            env
        };
        let known = [
            "matches",
            "findAll",
            "find",
            "all",
            "exists",
            "exists_one",
            "map",
            "has",
            "int",
            "size",
            "sum",
            "isSorted",
            "endsWith",
            "startsWith",
            "contains",
            "trim",
            "substring",
            "hasValue",
            "@in",
            "_&&_",
            "_||_",
            "_==_",
            "_!=_",
            "_<=_",
            "_<_",
            "_>=_",
            "_>_",
            "_+_",
            "_*_",
            "_%_",
            "_?_:_",
            "!_",
            "@not_strictly_false",
        ];
        for rule in rules {
            let program = env.compile(&rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            for f in program.references().functions() {
                assert!(known.contains(&f), "{rule}: calls {f}");
            }
        }
    }
}
