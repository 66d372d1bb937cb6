//! The `x-kubernetes-validations` rules of a schema, evaluated as apiextensions-apiserver's
//! `pkg/apiserver/schema/cel/validation.go` evaluates them on a create: every rule of every
//! node that has a value (nulls are not validated), `self` typed by the schema (a `number`
//! is a double even when written `5`), the message, the `messageExpression`, `fieldPath`
//! and `reason` of a failed rule, `<err> evaluating rule: <rule>` when a rule cannot be
//! evaluated.
//!
//! The language is the `cel` crate with its strings extension (`trim`, `substring`, ...);
//! the Kubernetes library functions it lacks are registered here: `find` and `findAll`
//! (k8s.io/apiserver `pkg/cel/library/regex.go`), `isSorted` and `sum` (`lists.go`).

use std::collections::HashMap;
use std::sync::Arc;

use cel::extractors::{Arguments, This};
use cel::objects::Key;
use cel::{Context, Env, ExecutionError, Program, Value};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSONSchemaProps as Schema, ValidationRule,
};
use serde_json::Value as Json;

use super::field::{BadValue, ErrorType, FieldError, Path};
use super::schema::{additional, items};

/// Longest message a `messageExpression` may give (`MaxEvaluatedMessageExpressionSizeBytes`).
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// The CEL environment of the rules and every rule compiled once.
pub struct Rules {
    root: Context<'static, 'static>,
    env: Arc<Env>,
    programs: HashMap<String, Result<Arc<Program>, String>>,
}

impl Default for Rules {
    fn default() -> Self {
        Self::new()
    }
}

impl Rules {
    pub fn new() -> Self {
        let env = Arc::new(environment());
        Rules {
            root: context(env.clone()),
            env,
            programs: HashMap::new(),
        }
    }

    /// The compiled program of `source` (compiled on first use).
    fn program(&mut self, source: &str) -> Result<Arc<Program>, String> {
        let env = &self.env;
        self.programs
            .entry(source.to_string())
            .or_insert_with(|| env.compile(source).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
    }

    /// Every rule failure of `v` and what it contains, `s` its schema, `path` where it is
    /// (`root`: the whole object, whose `self` carries apiVersion, kind and metadata).
    pub fn check(
        &mut self,
        v: &Json,
        s: &Schema,
        path: &Path,
        root: bool,
        errors: &mut Vec<FieldError>,
    ) {
        if v.is_null() {
            return;
        }
        self.expressions(v, s, path, root, errors);
        match v {
            Json::Object(map) => {
                if let Some(a) = additional(s) {
                    for (k, x) in map {
                        self.check(x, a, &path.key(k), false, errors);
                    }
                }
                if let Some(props) = &s.properties {
                    for (k, x) in map {
                        if let Some(p) = props.get(k) {
                            self.check(x, p, &path.child(k), false, errors);
                        }
                    }
                }
            }
            Json::Array(list) => {
                if let Some(i) = items(s) {
                    for (n, x) in list.iter().enumerate() {
                        self.check(x, i, &path.index(n), false, errors);
                    }
                }
            }
            _ => {}
        }
    }

    /// The rules of one node.
    fn expressions(
        &mut self,
        v: &Json,
        s: &Schema,
        path: &Path,
        root: bool,
        errors: &mut Vec<FieldError>,
    ) {
        let Some(rules) = &s.x_kubernetes_validations else {
            return;
        };
        let type_name = BadValue::Str(s.type_.clone().unwrap_or_default());
        let here = path.to_string();
        let this = if root { root_value(v, s) } else { to_cel(v, s) };
        for rule in rules {
            let program = match self.program(&rule.rule) {
                Ok(p) => p,
                Err(e) => {
                    errors.push(FieldError::invalid(
                        &here,
                        type_name.clone(),
                        format!("rule compile error: {e}"),
                    ));
                    continue;
                }
            };
            let optional_old_self = rule.optional_old_self == Some(true);
            // A transition rule (`oldSelf`) is evaluated by the API server only on an
            // update, against the object stored before: offline there is none, so it is
            // skipped, as on a create. A rule with `optionalOldSelf` is evaluated on a
            // create too, with `oldSelf` an empty optional, and so it is here.
            if program.references().has_variable("oldSelf") && !optional_old_self {
                continue;
            }
            let result = {
                let mut ctx = self.root.new_inner_scope();
                ctx.add_variable_from_value("self", this.clone());
                if optional_old_self {
                    let none = cel::common::types::CelOptional::none();
                    ctx.add_variable_as_val("oldSelf", Box::new(none));
                }
                program.execute(&ctx)
            };
            match result {
                Ok(Value::Bool(true)) => {}
                Ok(_) => {
                    let at = match rule.field_path.as_deref().and_then(|f| field_path(f, s)) {
                        Some(rel) => path.child(&rel).to_string(),
                        None => here.clone(),
                    };
                    let message = match &rule.message_expression {
                        Some(expr) => self
                            .message(expr, &this)
                            .unwrap_or_else(|| default_message(rule)),
                        None => default_message(rule),
                    };
                    errors.push(for_reason(&at, type_name.clone(), message, rule));
                }
                Err(e) => {
                    let err = go_error(&e);
                    let message = if err.starts_with("no such overload") {
                        format!(
                            "'{err}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                            rule_string(rule)
                        )
                    } else {
                        format!("{err} evaluating rule: {}", rule_string(rule))
                    };
                    errors.push(FieldError::invalid(&here, type_name.clone(), message));
                }
            }
        }
    }

    /// A `messageExpression`'s message, or None when it gives none the API server would
    /// show (it then shows the rule's `message`).
    fn message(&mut self, expr: &str, this: &Value) -> Option<String> {
        let program = self.program(expr).ok()?;
        let mut ctx = self.root.new_inner_scope();
        ctx.add_variable_from_value("self", this.clone());
        let Ok(Value::String(s)) = program.execute(&ctx) else {
            return None;
        };
        let s = s.trim();
        (!s.is_empty() && s.len() <= MAX_MESSAGE_BYTES && !s.contains('\n')).then(|| s.to_string())
    }
}

/// `ruleMessageOrDefault`.
fn default_message(rule: &ValidationRule) -> String {
    match rule.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!("failed rule: {}", rule_string(rule)),
    }
}

/// `ruleErrorString`: the message, or the rule.
fn rule_string(rule: &ValidationRule) -> String {
    match rule.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => rule.rule.trim().to_string(),
    }
}

/// `fieldErrorForReason`.
fn for_reason(at: &str, type_name: BadValue, detail: String, rule: &ValidationRule) -> FieldError {
    match rule.reason.as_deref() {
        Some("FieldValueForbidden") => {
            FieldError::new(ErrorType::Forbidden, at, BadValue::Omit, detail)
        }
        Some("FieldValueRequired") => FieldError::required(at, detail),
        Some("FieldValueDuplicate") => FieldError::new(ErrorType::Duplicate, at, type_name, ""),
        _ => FieldError::invalid(at, type_name, detail),
    }
}

/// A rule's `fieldPath` (`.a.b`, `['a-b']`) as the field path the API server reports, or
/// None when it names no field of the schema (the API server refuses such a CRD).
fn field_path(jsonpath: &str, s: &Schema) -> Option<String> {
    let mut out = Path::root();
    let mut schema = s;
    let mut rest = jsonpath;
    while !rest.is_empty() {
        let name: String;
        if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            name = r[..end].replace("\\'", "'");
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            name = r[..end].to_string();
            rest = &r[end..];
        } else {
            return None;
        }
        if let Some(props) = &schema.properties {
            schema = props.get(&name)?;
            out = out.child(&name);
        } else {
            schema = additional(schema)?;
            out = out.key(&name);
        }
    }
    Some(out.to_string())
}

/// The environment: CEL's standard library and macros, optionals, the strings extension.
fn environment() -> Env {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("the strings extension registers once");
    env
}

/// The root context: the environment and the Kubernetes library functions it lacks.
fn context(env: Arc<Env>) -> Context<'static, 'static> {
    let mut ctx = Context::with_env(env);
    let added = [
        ctx.add_function("find", |This(s): This<Arc<String>>, re: Arc<String>| {
            find(&s, &re)
        }),
        ctx.add_function(
            "findAll",
            |This(s): This<Arc<String>>, Arguments(args): Arguments| find_all_args(&s, &args),
        ),
        ctx.add_function("isSorted", |This(l): This<Arc<Vec<Value>>>| is_sorted(&l)),
        ctx.add_function("sum", |This(l): This<Arc<Vec<Value>>>| sum(&l)),
    ];
    for a in added {
        a.expect("no standard overload of that name");
    }
    ctx
}

fn regex(re: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(re)
        .map_err(|e| ExecutionError::function_error("regex", format!("Illegal regex: {e}")))
}

/// `<string>.find(<regex>)`: the first match, or the empty string.
pub fn find(s: &str, re: &str) -> Result<Value, ExecutionError> {
    let found = regex(re)?.find(s).map(|m| m.as_str()).unwrap_or("");
    Ok(Value::String(Arc::new(found.to_string())))
}

fn find_all_args(s: &str, args: &[Value]) -> Result<Value, ExecutionError> {
    match args {
        [Value::String(re)] => find_all(s, re, -1),
        [Value::String(re), Value::Int(n)] => find_all(s, re, *n),
        _ => Err(ExecutionError::function_error(
            "findAll",
            "no such overload",
        )),
    }
}

/// `<string>.findAll(<regex>[, <limit>])`: the matches left to right, as Go's
/// `Regexp.FindAllString` finds them (an empty match right after a match is skipped; a
/// negative limit is none, zero gives none).
pub fn find_all(s: &str, re: &str, limit: i64) -> Result<Value, ExecutionError> {
    let re = regex(re)?;
    let limit = if limit < 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let mut found = Vec::new();
    let (mut pos, mut prev_end) = (0usize, None::<usize>);
    while found.len() < limit && pos <= s.len() {
        let Some(m) = re.find_at(s, pos) else { break };
        let mut accept = true;
        if m.end() == m.start() {
            if Some(m.start()) == prev_end {
                accept = false;
            }
            // Past the empty match, by one character.
            pos = m.end() + s[m.end()..].chars().next().map_or(1, char::len_utf8);
        } else {
            pos = m.end();
        }
        prev_end = Some(m.end());
        if accept {
            found.push(Value::String(Arc::new(m.as_str().to_string())));
        }
    }
    Ok(Value::List(Arc::new(found)))
}

/// Compares two values as CEL compares them (numbers across int, uint and double).
fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, ExecutionError> {
    use Value::*;
    let num = |v: &Value| match v {
        Int(i) => Some(*i as f64),
        UInt(u) => Some(*u as f64),
        Float(f) => Some(*f),
        _ => None,
    };
    let ord = match (a, b) {
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (UInt(x), UInt(y)) => Some(x.cmp(y)),
        (String(x), String(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Bytes(x), Bytes(y)) => Some(x.cmp(y)),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    ord.ok_or_else(|| ExecutionError::function_error("isSorted", "no such overload"))
}

/// `<list>.isSorted()`: no element greater than the next.
pub fn is_sorted(list: &[Value]) -> Result<Value, ExecutionError> {
    for pair in list.windows(2) {
        if compare(&pair[0], &pair[1])? == std::cmp::Ordering::Greater {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

/// `<list>.sum()`: the elements added (0 for an empty list), an overflow an error.
pub fn sum(list: &[Value]) -> Result<Value, ExecutionError> {
    let overflow = || ExecutionError::function_error("sum", "integer overflow");
    let mut total: Option<Value> = None;
    for v in list {
        total = Some(match (total, v) {
            (None, v) => v.clone(),
            (Some(Value::Int(a)), Value::Int(b)) => {
                Value::Int(a.checked_add(*b).ok_or_else(overflow)?)
            }
            (Some(Value::UInt(a)), Value::UInt(b)) => {
                Value::UInt(a.checked_add(*b).ok_or_else(overflow)?)
            }
            (Some(Value::Float(a)), Value::Float(b)) => Value::Float(a + b),
            _ => return Err(ExecutionError::function_error("sum", "no such overload")),
        });
    }
    Ok(total.unwrap_or(Value::Int(0)))
}

/// An evaluation error as cel-go words the common ones.
fn go_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::NoSuchOverload(_) => "no such overload".to_string(),
        ExecutionError::Overflow(..) => "integer overflow".to_string(),
        ExecutionError::DivisionByZero(_) => "division by zero".to_string(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".to_string(),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A value as CEL sees it through its schema (Kubernetes' `UnstructuredToVal`): a
/// `number` is a double, an `integer` an int; objects and maps are maps.
pub fn to_cel(v: &Json, s: &Schema) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::String(x) => Value::String(Arc::new(x.clone())),
        Json::Number(n) => match (s.type_.as_deref(), n.as_i64()) {
            (Some("number"), _) | (_, None) => Value::Float(n.as_f64().unwrap_or_default()),
            (_, Some(i)) => Value::Int(i),
        },
        Json::Array(list) => {
            let empty = Schema::default();
            let item = items(s).unwrap_or(&empty);
            Value::List(Arc::new(list.iter().map(|x| to_cel(x, item)).collect()))
        }
        Json::Object(map) => {
            let empty = Schema::default();
            let entries: HashMap<Key, Value> = map
                .iter()
                .map(|(k, x)| {
                    let sub = s
                        .properties
                        .as_ref()
                        .and_then(|p| p.get(k))
                        .or(additional(s))
                        .unwrap_or(&empty);
                    (Key::String(Arc::new(k.clone())), to_cel(x, sub))
                })
                .collect();
            Value::Map(entries.into())
        }
    }
}

/// The whole object as a root rule's `self`: apiVersion, kind, `metadata` with only its
/// name and generateName (`WithTypeAndObjectMeta`), and the schema's fields.
fn root_value(v: &Json, s: &Schema) -> Value {
    let mut object = v.clone();
    if let Some(map) = object.as_object_mut() {
        let meta = map.get("metadata").cloned().unwrap_or_default();
        let mut kept = serde_json::Map::new();
        for k in ["name", "generateName"] {
            if let Some(x) = meta.get(k) {
                kept.insert(k.to_string(), x.clone());
            }
        }
        map.insert("metadata".into(), Json::Object(kept));
    }
    to_cel(&object, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: Value) -> Vec<String> {
        match v {
            Value::List(l) => l
                .iter()
                .map(|x| match x {
                    Value::String(s) => s.to_string(),
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    fn eval(source: &str) -> Result<Value, ExecutionError> {
        let mut rules = Rules::new();
        let program = rules.program(source).unwrap();
        let ctx = rules.root.new_inner_scope();
        program.execute(&ctx)
    }

    #[test]
    fn find_gives_the_first_match_or_nothing() {
        assert_eq!(
            find("28d", "^[0-9]+").unwrap(),
            Value::String(Arc::new("28".into()))
        );
        assert_eq!(
            find("d28", "^[0-9]+").unwrap(),
            Value::String(Arc::new("".into()))
        );
        assert!(find("x", "(").is_err());
    }

    #[test]
    fn find_all_finds_as_go_does() {
        assert_eq!(
            strings(find_all("1h30m", "[0-9]+", -1).unwrap()),
            ["1", "30"]
        );
        assert_eq!(strings(find_all("1h30m", "[0-9]+", 1).unwrap()), ["1"]);
        assert!(strings(find_all("1h30m", "[0-9]+", 0).unwrap()).is_empty());
        // Go: an empty match right after a match is not reported.
        assert_eq!(
            strings(find_all("baaab", "a*", -1).unwrap()),
            ["", "aaa", ""]
        );
        assert_eq!(strings(find_all("é1", "[0-9]*", -1).unwrap()), ["", "1"]);
    }

    #[test]
    fn is_sorted_allows_equal_neighbours() {
        assert_eq!(is_sorted(&[]).unwrap(), Value::Bool(true));
        let ints = |v: &[i64]| v.iter().map(|i| Value::Int(*i)).collect::<Vec<_>>();
        assert_eq!(
            is_sorted(&ints(&[10, 50, 50, 100])).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(is_sorted(&ints(&[50, 10])).unwrap(), Value::Bool(false));
        assert!(is_sorted(&[Value::Int(1), Value::String(Arc::new("a".into()))]).is_err());
    }

    #[test]
    fn sum_adds_and_refuses_an_overflow() {
        assert_eq!(sum(&[]).unwrap(), Value::Int(0));
        assert_eq!(sum(&[Value::Int(2), Value::Int(3)]).unwrap(), Value::Int(5));
        assert_eq!(
            sum(&[Value::Float(0.5), Value::Float(0.25)]).unwrap(),
            Value::Float(0.75)
        );
        assert!(sum(&[Value::Int(i64::MAX), Value::Int(1)]).is_err());
    }

    #[test]
    fn the_kubernetes_functions_are_called_as_methods_from_rules() {
        let t = Value::Bool(true);
        assert_eq!(eval("'1h30m'.findAll('[0-9]+') == ['1', '30']").unwrap(), t);
        assert_eq!(eval("'1h30m'.findAll('[0-9]+', 1) == ['1']").unwrap(), t);
        assert_eq!(eval("'300ms'.find('^[0-9]+') == '300'").unwrap(), t);
        assert_eq!(
            eval("[10, 50, 100].isSorted() && ![2, 1].isSorted()").unwrap(),
            t
        );
        assert_eq!(eval("[1, 2, 3].sum() == 6 && [].sum() == 0").unwrap(), t);
        assert_eq!(
            eval("'28d'.findAll('[0-9]+(ms|s|m|h|d|w)').map(p, int(p.find('^[0-9]+')) * 86400000).sum() == 2419200000")
                .unwrap(),
            t
        );
    }

    #[test]
    fn the_standard_functions_of_the_rules_behave_as_in_kubernetes() {
        let t = Value::Bool(true);
        for rule in [
            "'  '.trim() == ''",
            "'2026-02-31'.substring(5, 7) == '02'",
            "'02' in ['04', '06']  == false",
            "int('0028') == 28",
            "size('día') == 3",
            "'a{{hash}}'.contains('{{hash}}') && 'https://x'.startsWith('https://') && 'x}'.endsWith('}')",
            "'0d'.matches('[1-9]') == false && '10d'.matches('[1-9]')",
            "[1, 2].all(a, [1, 2].exists_one(b, b == a)) && [1, 1].exists(a, a == 1)",
            "{'a': 1}.size() == 1 && size({'a': 1}) == 1",
            "(true ? 1 : 0) + (false ? 1 : 0) == 1",
            "2100 % 400 != 0",
            "optional.none().hasValue() == false",
            "!(false && 1 / 0 == 1)",
            "true || 1 / 0 == 1",
        ] {
            assert_eq!(eval(rule).unwrap(), t, "{rule}");
        }
    }

    #[test]
    fn a_rule_of_the_root_sees_only_the_name_of_the_metadata() {
        let s: Schema = serde_json::from_value(serde_json::json!({"type": "object",
            "properties": {"spec": {"type": "object", "properties": {"x": {"type": "number"}}}}}))
        .unwrap();
        let v = serde_json::json!({"apiVersion": "g/v", "kind": "K",
            "metadata": {"name": "n", "labels": {"a": "b"}}, "spec": {"x": 5}});
        let mut rules = Rules::new();
        let program = rules
            .program("self.metadata.name == 'n' && !has(self.metadata.labels) && self.spec.x == 5.0 && self.kind == 'K'")
            .unwrap();
        let mut ctx = rules.root.new_inner_scope();
        ctx.add_variable_from_value("self", root_value(&v, &s));
        assert_eq!(program.execute(&ctx).unwrap(), Value::Bool(true));
    }

    #[test]
    fn a_failed_rule_gives_its_message_expression_field_path_and_reason() {
        let s: Schema = serde_json::from_value(serde_json::json!({"type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
        "x-kubernetes-validations": [
            {"rule": "self.a > 1", "messageExpression": "'a is ' + string(self.a)",
             "fieldPath": ".a", "reason": "FieldValueForbidden"},
            {"rule": "self.b == 'x'"},
            {"rule": "self.b == 'y'", "message": "b must be y", "messageExpression": "self.nope"},
            {"rule": "self.missing == 1", "message": "m"},
            {"rule": "self.b == oldSelf.b", "message": "immutable"},
            {"rule": "oldSelf.hasValue() || self.a > 5", "optionalOldSelf": true,
             "message": "a must be above 5 at first", "reason": "FieldValueRequired"},
            {"rule": "self.a == 1"},
        ]}))
        .unwrap();
        let v = serde_json::json!({"a": 1, "b": "z"});
        let mut errors = Vec::new();
        Rules::new().check(&v, &s, &Path::root().child("spec"), false, &mut errors);
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "spec.a: Forbidden: a is 1",
                r#"spec: Invalid value: "object": failed rule: self.b == 'x'"#,
                r#"spec: Invalid value: "object": b must be y"#,
                r#"spec: Invalid value: "object": no such key: missing evaluating rule: m"#,
                "spec: Required value: a must be above 5 at first",
            ]
        );
    }

    #[test]
    fn field_paths_name_the_field_or_map_key() {
        let s: Schema = serde_json::from_value(serde_json::json!({"type": "object",
            "properties": {"a": {"type": "object", "properties": {"b-c": {"type": "string"}}},
                           "m": {"type": "object", "additionalProperties": {"type": "string"}}}}))
        .unwrap();
        assert_eq!(field_path(".a['b-c']", &s).as_deref(), Some("a.b-c"));
        assert_eq!(field_path(".m.k", &s).as_deref(), Some("m[k]"));
        assert_eq!(field_path(".nope", &s), None);
    }
}
