//! A CRD's structural schema applied as the API server applies it to a create: unknown
//! fields pruned, non-nullable nulls dropped, defaults set (apiextensions-apiserver's
//! `structural/pruning` and `structural/defaulting`), then the OpenAPI v3 checks of
//! k8s.io/kube-openapi's `pkg/validation/validate` (types, required, enum, pattern,
//! minimum/maximum, multipleOf, minLength/maxLength, minItems/maxItems, uniqueItems,
//! min/maxProperties, the string formats the API server supports), turned into field
//! errors as apiextensions-apiserver's `kubeOpenAPIResultToFieldErrors` does.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps as Schema, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::Value as Json;

use super::field::{BadValue, ErrorType, FieldError, Path, go_float, go_quote};

/// The schema of a list's items.
pub fn items(s: &Schema) -> Option<&Schema> {
    match &s.items {
        Some(JSONSchemaPropsOrArray::Schema(x)) => Some(x),
        _ => None,
    }
}

/// The schema of a map's values (`additionalProperties`).
pub fn additional(s: &Schema) -> Option<&Schema> {
    match &s.additional_properties {
        Some(JSONSchemaPropsOrBool::Schema(x)) => Some(x),
        _ => None,
    }
}

fn preserves_unknown(s: &Schema) -> bool {
    s.x_kubernetes_preserve_unknown_fields == Some(true)
        || matches!(
            s.additional_properties,
            Some(JSONSchemaPropsOrBool::Bool(true))
        )
}

fn nullable(s: &Schema) -> bool {
    s.nullable == Some(true)
}

/// Removes what the schema does not know (the API server prunes it; kubectl's default
/// `--validate=strict` would refuse it), collecting the paths of what was removed. At the
/// root, `apiVersion`, `kind` and `metadata` stay.
pub fn prune(v: &mut Json, s: &Schema, path: &Path, root: bool, pruned: &mut Vec<String>) {
    match v {
        Json::Object(map) => {
            let props = s.properties.as_ref();
            let extra = additional(s);
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                if let Some(p) = props.and_then(|p| p.get(&k)) {
                    prune(
                        map.get_mut(&k).expect("key"),
                        p,
                        &path.child(&k),
                        false,
                        pruned,
                    );
                } else if let Some(a) = extra {
                    prune(
                        map.get_mut(&k).expect("key"),
                        a,
                        &path.key(&k),
                        false,
                        pruned,
                    );
                } else if !(preserves_unknown(s)
                    || root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"))
                {
                    map.remove(&k);
                    pruned.push(path.child(&k).to_string());
                }
            }
        }
        Json::Array(list) => {
            if let Some(i) = items(s) {
                for (n, x) in list.iter_mut().enumerate() {
                    prune(x, i, &path.index(n), false, pruned);
                }
            }
        }
        _ => {}
    }
}

/// `PruneNonNullableNullsWithoutDefaults`: a null where the schema allows none, and has
/// no default to put instead, is dropped.
pub fn prune_nulls(v: &mut Json, s: &Schema) {
    match v {
        Json::Object(map) => {
            let props = s.properties.as_ref();
            let extra = additional(s);
            map.retain(|k, x| {
                let sub = props.and_then(|p| p.get(k)).or(extra);
                match sub {
                    Some(sub) if x.is_null() => nullable(sub) || sub.default.is_some(),
                    Some(sub) => {
                        prune_nulls(x, sub);
                        true
                    }
                    None => true,
                }
            });
        }
        Json::Array(list) => {
            if let Some(i) = items(s) {
                list.iter_mut().for_each(|x| prune_nulls(x, i));
            }
        }
        _ => {}
    }
}

/// Structural defaulting: a property with a default that is absent (or a null the
/// schema does not allow) gets it, then every property is defaulted in turn.
pub fn default(v: &mut Json, s: &Schema) {
    match v {
        Json::Object(map) => {
            if let Some(props) = &s.properties {
                for (k, p) in props {
                    let Some(d) = &p.default else { continue };
                    let absent = match map.get(k) {
                        None => true,
                        Some(x) => x.is_null() && !nullable(p),
                    };
                    if absent {
                        map.insert(k.clone(), d.0.clone());
                    }
                }
            }
            let extra = additional(s);
            for (k, x) in map.iter_mut() {
                if let Some(p) = s.properties.as_ref().and_then(|p| p.get(k)).or(extra) {
                    default(x, p);
                }
            }
        }
        Json::Array(list) => {
            if let Some(i) = items(s) {
                list.iter_mut().for_each(|x| default(x, i));
            }
        }
        _ => {}
    }
}

/// Every OpenAPI error of `v` (the whole object) against its root schema.
pub fn validate(v: &Json, s: &Schema) -> Vec<FieldError> {
    let mut errors = Vec::new();
    node(v, s, "", &mut errors);
    errors
}

/// One `errors.Validation` of kube-openapi, as the field error the API server makes of it.
struct Failure<'a> {
    code: Code,
    /// kube-openapi's path of the value (`spec.steps[1].weight`; `.spec` for a required
    /// property of the root).
    name: &'a str,
    value: BadValue,
    message: String,
}

#[derive(Clone, Copy)]
enum Code {
    Required,
    Enum,
    TooLong(i64),
    MaxItems(i64),
    TooManyProperties(i64),
    InvalidType,
    Other,
}

impl Failure<'_> {
    fn field_error(self, enum_values: &[String]) -> FieldError {
        let name = self.name.trim_start_matches('.');
        let field = if self.name.is_empty() || self.name == "." {
            Path::root().to_string()
        } else {
            name.to_string()
        };
        match self.code {
            Code::Required => FieldError::required(&field, ""),
            Code::Enum => FieldError::not_supported(&field, self.value, enum_values),
            Code::TooLong(max) => FieldError::too_long(&field, max),
            Code::MaxItems(max) | Code::TooManyProperties(max) => {
                let actual = match self.value {
                    BadValue::Int(i) => i,
                    _ => -1,
                };
                FieldError::too_many(&field, actual, max)
            }
            Code::InvalidType => {
                FieldError::new(ErrorType::TypeInvalid, &field, self.value, self.message)
            }
            Code::Other => FieldError::invalid(&field, self.value, self.message),
        }
    }
}

fn push(errors: &mut Vec<FieldError>, f: Failure<'_>) {
    errors.push(f.field_error(&[]));
}

/// The JSON schema type name of a value, and the format kube-openapi gives it.
fn kind_of(v: &Json) -> (&'static str, &'static str) {
    match v {
        Json::Null => ("null", ""),
        Json::Bool(_) => ("boolean", ""),
        Json::String(_) => ("string", ""),
        Json::Number(n) if n.is_f64() => ("number", "float64"),
        Json::Number(_) => ("integer", "int64"),
        Json::Array(_) => ("array", ""),
        Json::Object(_) => ("object", ""),
    }
}

/// The string formats the API server checks (others are stripped from the schema and
/// checked by no one).
fn supported_format(s: &Schema) -> Option<&str> {
    let f = s.format.as_deref()?;
    let known = [
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "k8s-short-name",
        "k8s-long-name",
    ];
    let normalized = if f == "date-time" { "datetime" } else { f };
    known.contains(&normalized).then_some(normalized)
}

/// `SchemaValidator.Validate` of one node: the type, string, format, number, slice,
/// enum and object validators in that order.
fn node(v: &Json, s: &Schema, path: &str, errors: &mut Vec<FieldError>) {
    if v.is_null() {
        if let Some(f) = type_check(v, s, path) {
            push(errors, f);
        }
        return;
    }
    if let Some(f) = type_check(v, s, path) {
        push(errors, f);
    }
    if let Json::String(text) = v {
        if let Some(f) = string_check(text, s, path) {
            push(errors, f);
        }
        if let Some(format) = supported_format(s)
            && !format_ok(format, text)
        {
            push(
                errors,
                Failure {
                    code: Code::InvalidType,
                    name: path,
                    value: BadValue::Str(text.clone()),
                    message: format!(
                        "{path} in body must be of type {format}: {}",
                        go_quote(text)
                    ),
                },
            );
        }
    }
    if let Json::Number(n) = v {
        number_check(n, s, path, errors);
    }
    if let Json::Array(list) = v {
        slice_check(list, s, path, errors);
    }
    if let Some(values) = &s.enum_
        && !values.iter().any(|e| same(&e.0, v))
    {
        let supported: Vec<String> = values
            .iter()
            .map(|e| match &e.0 {
                Json::String(x) => x.clone(),
                other => serde_json::to_string(other).unwrap_or_default(),
            })
            .collect();
        let listed: Vec<String> = values
            .iter()
            .map(|e| match &e.0 {
                Json::String(x) => x.clone(),
                other => other.to_string(),
            })
            .collect();
        let f = Failure {
            code: Code::Enum,
            name: path,
            value: BadValue::of(v),
            message: format!("{path} in body should be one of [{}]", listed.join(" ")),
        };
        errors.push(f.field_error(&supported));
    }
    if let Json::Object(map) = v {
        object_check(map, s, path, errors);
    }
}

/// Enum membership: equal JSON, numbers by value.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn in_body(path: &str) -> String {
    format!("{path} in body")
}

/// kube-openapi's `typeValidator`.
fn type_check<'a>(v: &Json, s: &Schema, path: &'a str) -> Option<Failure<'a>> {
    let want = s.type_.as_deref().unwrap_or("");
    let format = supported_format(s).unwrap_or("");
    if want.is_empty() && format.is_empty() {
        return None;
    }
    let invalid = |type_name: &str, value: &str| Failure {
        code: Code::InvalidType,
        name: path,
        value: BadValue::Str(value.to_string()),
        message: format!(
            "{} must be of type {type_name}: {}",
            in_body(path),
            go_quote(value)
        ),
    };
    if v.is_null() {
        return (!want.is_empty() && !nullable(s)).then(|| invalid(want, "null"));
    }
    let (sch_type, data_format) = kind_of(v);
    let is_float_int = sch_type == "number"
        && want == "integer"
        && v.as_f64()
            .is_some_and(|f| f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15);
    let is_int_float = sch_type == "integer" && want == "number";
    let stringish = matches!(v, Json::String(_) | Json::Array(_));
    let of_type = want == sch_type || is_float_int || is_int_float;
    if !stringish && !format.is_empty() && !of_type && data_format != format {
        return Some(invalid(format, data_format));
    }
    let numeric = want == "number" || want == "integer";
    if !numeric && !format.is_empty() && stringish {
        return None;
    }
    if !of_type {
        return Some(invalid(want, sch_type));
    }
    None
}

/// kube-openapi's `stringValidator`: the first of maxLength, minLength, pattern that fails.
fn string_check<'a>(text: &str, s: &Schema, path: &'a str) -> Option<Failure<'a>> {
    let len = text.chars().count() as i64;
    if let Some(max) = s.max_length
        && len > max
    {
        return Some(Failure {
            code: Code::TooLong(max),
            name: path,
            value: BadValue::Str(text.to_string()),
            message: format!("{} should be at most {max} chars long", in_body(path)),
        });
    }
    if let Some(min) = s.min_length
        && len < min
    {
        return Some(Failure {
            code: Code::Other,
            name: path,
            value: BadValue::Str(text.to_string()),
            message: format!("{} should be at least {min} chars long", in_body(path)),
        });
    }
    if let Some(pattern) = &s.pattern {
        let (matched, shown) = match regex::Regex::new(pattern) {
            Ok(re) => (re.is_match(text), pattern.clone()),
            Err(e) => (false, format!("{pattern}, but pattern is invalid: {e}")),
        };
        if !matched {
            return Some(Failure {
                code: Code::Other,
                name: path,
                value: BadValue::Str(text.to_string()),
                message: format!("{} should match '{shown}'", in_body(path)),
            });
        }
    }
    None
}

fn format_ok(format: &str, text: &str) -> bool {
    use std::sync::LazyLock;
    static DATE: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"^\d{4}-\d{2}-\d{2}$").expect("regex"));
    static DATE_TIME: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(
            r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:?\d{2})$",
        )
        .expect("regex")
    });
    match format {
        "date" => DATE.is_match(text) && text.parse::<jiff::civil::Date>().is_ok(),
        "datetime" => DATE_TIME.is_match(text),
        // The other formats are not used by these CRDs: not checked offline.
        _ => true,
    }
}

/// kube-openapi's `numberValidator`: multipleOf, minimum, maximum, compared in the
/// value's own type (an integer against the bound made an integer).
fn number_check(n: &serde_json::Number, s: &Schema, path: &str, errors: &mut Vec<FieldError>) {
    let as_int = n.as_i64();
    let value = BadValue::of(&Json::Number(n.clone()));
    let f = n.as_f64().unwrap_or_default();
    let bound = |b: f64| match as_int {
        Some(_) => format!("{}", b as i64),
        None => go_float(b),
    };
    let fail = |message: String| Failure {
        code: Code::Other,
        name: path,
        value: value.clone(),
        message,
    };
    if let Some(m) = s.multiple_of {
        let ok = match as_int {
            Some(i) if m as i64 != 0 => i % (m as i64) == 0,
            _ => {
                let q = if m < 1.0 { f * (1.0 / m) } else { f / m };
                q.fract() == 0.0
            }
        };
        if !ok {
            push(
                errors,
                fail(format!(
                    "{} should be a multiple of {}",
                    in_body(path),
                    bound(m)
                )),
            );
        }
    }
    if let Some(min) = s.minimum {
        let exclusive = s.exclusive_minimum == Some(true);
        let below = match as_int {
            Some(i) => {
                let m = min as i64;
                if exclusive { i <= m } else { i < m }
            }
            None => {
                if exclusive {
                    f <= min
                } else {
                    f < min
                }
            }
        };
        if below {
            let how = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            push(
                errors,
                fail(format!("{} should be {how} {}", in_body(path), bound(min))),
            );
        }
    }
    if let Some(max) = s.maximum {
        let exclusive = s.exclusive_maximum == Some(true);
        let above = match as_int {
            Some(i) => {
                let m = max as i64;
                if exclusive { i >= m } else { i > m }
            }
            None => {
                if exclusive {
                    f >= max
                } else {
                    f > max
                }
            }
        };
        if above {
            let how = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            push(
                errors,
                fail(format!("{} should be {how} {}", in_body(path), bound(max))),
            );
        }
    }
}

/// kube-openapi's `schemaSliceValidator`: the items first, then minItems, maxItems and
/// uniqueItems.
fn slice_check(list: &[Json], s: &Schema, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(i) = items(s) {
        for (n, x) in list.iter().enumerate() {
            node(x, i, &format!("{path}[{n}]"), errors);
        }
    }
    let size = list.len() as i64;
    if let Some(min) = s.min_items
        && size < min
    {
        push(
            errors,
            Failure {
                code: Code::Other,
                name: path,
                value: BadValue::Int(size),
                message: format!("{} should have at least {min} items", in_body(path)),
            },
        );
    }
    if let Some(max) = s.max_items
        && size > max
    {
        push(
            errors,
            Failure {
                code: Code::MaxItems(max),
                name: path,
                value: BadValue::Int(size),
                message: format!("{} should have at most {max} items", in_body(path)),
            },
        );
    }
    if s.unique_items == Some(true) {
        let duplicated = list.iter().enumerate().any(|(i, x)| list[..i].contains(x));
        if duplicated {
            push(
                errors,
                Failure {
                    code: Code::Other,
                    name: path,
                    value: BadValue::Str(String::new()),
                    message: format!("{} shouldn't contain duplicates", in_body(path)),
                },
            );
        }
    }
}

/// kube-openapi's `objectValidator`: property counts, forbidden additional properties,
/// the additional properties' and the properties' values, then required.
fn object_check(
    map: &serde_json::Map<String, Json>,
    s: &Schema,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    let count = map.len() as i64;
    if let Some(min) = s.min_properties
        && count < min
    {
        push(
            errors,
            Failure {
                code: Code::Other,
                name: path,
                value: BadValue::Int(count),
                message: format!("{} should have at least {min} properties", in_body(path)),
            },
        );
    }
    if let Some(max) = s.max_properties
        && count > max
    {
        push(
            errors,
            Failure {
                code: Code::TooManyProperties(max),
                name: path,
                value: BadValue::Int(count),
                message: format!("{} should have at most {max} properties", in_body(path)),
            },
        );
    }
    let props = s.properties.as_ref();
    let known = |k: &str| props.is_some_and(|p| p.contains_key(k));
    match &s.additional_properties {
        Some(JSONSchemaPropsOrBool::Bool(false)) => {
            for k in map.keys().filter(|k| !known(k)) {
                push(
                    errors,
                    Failure {
                        code: Code::Other,
                        name: path,
                        value: BadValue::Str(k.clone()),
                        message: format!("{path}.{k} in body is a forbidden property"),
                    },
                );
            }
        }
        Some(JSONSchemaPropsOrBool::Schema(a)) => {
            for (k, x) in map.iter().filter(|(k, _)| !known(k)) {
                node(x, a, &format!("{path}.{k}"), errors);
            }
        }
        _ => {}
    }
    if let Some(props) = props {
        for (name, p) in props {
            if let Some(x) = map.get(name) {
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                node(x, p, &child, errors);
            }
        }
    }
    for k in s.required.iter().flatten() {
        if !map.contains_key(k) {
            let name = format!("{path}.{k}");
            errors.push(
                Failure {
                    code: Code::Required,
                    name: &name,
                    value: BadValue::Omit,
                    message: format!("{} is required", in_body(&name)),
                }
                .field_error(&[]),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Json) -> Schema {
        serde_json::from_value(v).unwrap()
    }

    fn errors_of(v: Json, s: Json) -> Vec<String> {
        validate(&v, &schema(s))
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn each_openapi_failure_is_worded_as_the_api_server_words_it() {
        let s = json!({"type": "object", "required": ["spec"], "properties": {"spec": {
        "type": "object", "required": ["a"],
        "properties": {
            "level": {"type": "integer", "minimum": 1.0, "maximum": 5.0},
            "ratio": {"type": "number", "maximum": 0.5},
            "name": {"type": "string", "minLength": 1, "maxLength": 3, "pattern": "^[a-z]+$"},
            "model": {"type": "string", "enum": ["customer-service"]},
            "steps": {"type": "array", "minItems": 1, "maxItems": 2, "items": {"type": "integer"}},
            "a": {"type": "string"},
        }}}});
        assert_eq!(errors_of(json!({}), s.clone()), ["spec: Required value"]);
        let got = errors_of(
            json!({"spec": {"level": 6, "ratio": 0.75, "name": "abcd", "model": "x", "steps": [1, "b", 3]}}),
            s.clone(),
        );
        assert_eq!(
            got,
            [
                r#"spec.level: Invalid value: 6: spec.level in body should be less than or equal to 5"#,
                r#"spec.model: Unsupported value: "x": supported values: "customer-service""#,
                r#"spec.name: Too long: may not be more than 3 bytes"#,
                r#"spec.ratio: Invalid value: 0.75: spec.ratio in body should be less than or equal to 0.5"#,
                r#"spec.steps[1]: Invalid value: "string": spec.steps[1] in body must be of type integer: "string""#,
                r#"spec.steps: Too many: 3: must have at most 2 items"#,
                r#"spec.a: Required value"#,
            ]
        );
        let got = errors_of(
            json!({"spec": {"a": "x", "level": 0, "name": "A", "steps": []}}),
            s,
        );
        assert_eq!(
            got,
            [
                r#"spec.level: Invalid value: 0: spec.level in body should be greater than or equal to 1"#,
                r#"spec.name: Invalid value: "A": spec.name in body should match '^[a-z]+$'"#,
                r#"spec.steps: Invalid value: 0: spec.steps in body should have at least 1 items"#,
            ]
        );
    }

    #[test]
    fn pruning_drops_unknown_fields_and_keeps_the_object_meta() {
        let s = schema(
            json!({"type": "object", "properties": {"spec": {"type": "object",
            "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"}}}}}}),
        );
        let mut v = json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "n"},
            "spec": {"m": {"a": "b"}, "typo": 1}, "extra": true});
        let mut pruned = Vec::new();
        prune(&mut v, &s, &Path::root(), true, &mut pruned);
        assert_eq!(
            v,
            json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "n"}, "spec": {"m": {"a": "b"}}})
        );
        assert_eq!(pruned, ["extra", "spec.typo"]);
    }

    #[test]
    fn defaults_fill_absent_fields_and_non_nullable_nulls() {
        let s = schema(json!({"type": "object", "properties": {
            "scope": {"type": "object", "default": {}, "properties": {"all": {"type": "boolean", "default": true}}},
            "model": {"type": "string", "default": "m"},
            "x": {"type": "string"},
            "y": {"type": "string", "nullable": true}}}));
        let mut v = json!({"model": null, "x": null, "y": null});
        prune_nulls(&mut v, &s);
        default(&mut v, &s);
        assert_eq!(v, json!({"scope": {"all": true}, "model": "m", "y": null}));
    }
}
