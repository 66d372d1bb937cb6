//! Field errors as the API server words them: k8s.io/apimachinery's
//! `pkg/util/validation/field` (`Error.Error()`, `ErrorBody()`, `Path.String()`) and
//! `pkg/api/errors.NewInvalid` (the `<Kind>.<group> "<name>" is invalid: ...` sentence),
//! with Go's `%q` and `%v` of a float64, which the bodies use.

use std::fmt;

/// `field.ErrorType`: the body's first words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl ErrorType {
    fn words(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// `field.Error.BadValue`, as far as its printing goes.
#[derive(Debug, Clone, PartialEq)]
pub enum BadValue {
    /// Not printed (`omitValue`, and the types whose body never shows it).
    Omit,
    /// Go's nil: printed `null`.
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// Anything else: printed as JSON.
    Json(serde_json::Value),
}

impl BadValue {
    /// A JSON value as the API server holds it (int64, float64, string, bool, or JSON).
    pub fn of(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => BadValue::Null,
            serde_json::Value::Bool(b) => BadValue::Bool(*b),
            serde_json::Value::String(s) => BadValue::Str(s.clone()),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => BadValue::Int(i),
                None => BadValue::Float(n.as_f64().unwrap_or_default()),
            },
            other => BadValue::Json(other.clone()),
        }
    }
}

/// One `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    /// `Path.String()`: `spec.steps[1].weight`, or `<nil>` for the root.
    pub field: String,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn new(kind: ErrorType, field: &str, value: BadValue, detail: impl Into<String>) -> Self {
        FieldError {
            kind,
            field: field.to_string(),
            value,
            detail: detail.into(),
        }
    }

    /// `field.Invalid`.
    pub fn invalid(field: &str, value: BadValue, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, value, detail)
    }

    /// `field.Required`.
    pub fn required(field: &str, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, BadValue::Omit, detail)
    }

    /// `field.TooLong`: the value is never shown.
    pub fn too_long(field: &str, max: i64) -> Self {
        let detail = if max >= 0 {
            let unit = if max == 1 { "byte" } else { "bytes" };
            format!("may not be more than {max} {unit}")
        } else {
            "value is too long".to_string()
        };
        Self::new(ErrorType::TooLong, field, BadValue::Omit, detail)
    }

    /// `field.TooMany`.
    pub fn too_many(field: &str, actual: i64, max: i64) -> Self {
        let detail = if max >= 0 {
            let unit = if max == 1 { "item" } else { "items" };
            format!("must have at most {max} {unit}")
        } else {
            "has too many items".to_string()
        };
        let value = if actual >= 0 {
            BadValue::Int(actual)
        } else {
            BadValue::Omit
        };
        Self::new(ErrorType::TooMany, field, value, detail)
    }

    /// `field.NotSupported`: the supported values quoted.
    pub fn not_supported(field: &str, value: BadValue, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, field, value, detail)
    }

    /// `ErrorBody()`: the message without the field.
    pub fn body(&self) -> String {
        let words = self.kind.words();
        let mut s = match self.kind {
            ErrorType::Required
            | ErrorType::Forbidden
            | ErrorType::TooLong
            | ErrorType::Internal => words.to_string(),
            _ => match &self.value {
                BadValue::Omit => words.to_string(),
                BadValue::Null => format!("{words}: null"),
                BadValue::Int(i) => format!("{words}: {i}"),
                BadValue::Float(f) => format!("{words}: {}", go_float(*f)),
                BadValue::Bool(b) => format!("{words}: {b}"),
                BadValue::Str(v) => format!("{words}: {}", go_quote(v)),
                BadValue::Json(v) => format!("{words}: {}", go_json(v)),
            },
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// The errors without repeats, as `ErrorList.ToAggregate()` keeps them.
pub fn dedup(errors: &[FieldError]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    errors
        .iter()
        .map(ToString::to_string)
        .filter(|m| seen.insert(m.clone()))
        .collect()
}

/// `apierrors.NewInvalid(kind, name, errs).Error()`: `<Kind>.<group> "<name>" is invalid:`
/// and the errors (one alone, or `[a, b]`).
pub fn invalid_message(qualified_kind: &str, name: &str, errors: &[FieldError]) -> String {
    let messages = dedup(errors);
    let head = format!("{qualified_kind} {} is invalid", go_quote(name));
    match messages.len() {
        0 => head,
        1 => format!("{head}: {}", messages[0]),
        _ => format!("{head}: [{}]", messages.join(", ")),
    }
}

/// A field path as `field.Path` builds and prints it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Path(Vec<Segment>);

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Name(String),
    Index(String),
}

impl Path {
    /// The root: `<nil>` when printed alone.
    pub fn root() -> Self {
        Path(Vec::new())
    }

    pub fn child(&self, name: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Name(name.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(i.to_string()));
        p
    }

    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Segment::Index(k.to_string()));
        p
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("<nil>");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Name(n) if i > 0 => write!(f, ".{n}")?,
                Segment::Name(n) => f.write_str(n)?,
                Segment::Index(x) => write!(f, "[{x}]")?,
            }
        }
        Ok(())
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !go_printable(c) => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Close to Go's `strconv.IsPrint`: no control or format character, no line or paragraph
/// separator.
fn go_printable(c: char) -> bool {
    !(c.is_control()
        || matches!(c as u32, 0xad | 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x206f | 0xfeff))
}

/// Go's `%v` of a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest digits
/// that read back the same, with an exponent (`1e+06`) below 1e-4 and from 1e21 on... and
/// from 1e6 on, as `%v` decides with precision 6 for the shortest form.
pub fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` prints the shortest round-trip digits: `d.ddde[-]x`.
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    // Fixed notation: the decimal point after exp + 1 digits.
    let point = exp + 1;
    let s = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{s}")
}

/// Go's `json.Marshal` of a decoded JSON value (keys sorted, `<`, `>` and `&` escaped).
pub fn go_json(v: &serde_json::Value) -> String {
    serde_json::to_string(v)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        for (f, want) in [
            (5.0, "5"),
            (0.5, "0.5"),
            (99.99999999999999, "99.99999999999999"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn strings_are_quoted_as_go_quotes_them() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("tab\there\n"), r#""tab\there\n""#);
        assert_eq!(go_quote("\u{1}é"), r#""\x01é""#);
    }

    #[test]
    fn bodies_follow_the_error_type() {
        let e = FieldError::invalid("spec.window", BadValue::Str("string".into()), "m");
        assert_eq!(e.to_string(), r#"spec.window: Invalid value: "string": m"#);
        assert_eq!(
            FieldError::required("spec", "").to_string(),
            "spec: Required value"
        );
        assert_eq!(
            FieldError::too_long("spec.x", 63).to_string(),
            "spec.x: Too long: may not be more than 63 bytes"
        );
        assert_eq!(
            FieldError::too_many("spec.steps", 21, 20).to_string(),
            "spec.steps: Too many: 21: must have at most 20 items"
        );
        assert_eq!(
            FieldError::not_supported(
                "spec.model",
                BadValue::Str("x".into()),
                &["a".into(), "b".into()]
            )
            .to_string(),
            r#"spec.model: Unsupported value: "x": supported values: "a", "b""#
        );
        assert_eq!(
            FieldError::invalid(&Path::root().to_string(), BadValue::Null, "d").to_string(),
            "<nil>: Invalid value: null: d"
        );
    }

    #[test]
    fn paths_print_as_field_path_does() {
        let p = Path::root()
            .child("spec")
            .child("steps")
            .index(1)
            .child("weight");
        assert_eq!(p.to_string(), "spec.steps[1].weight");
        assert_eq!(Path::root().child("m").key("a.b").to_string(), "m[a.b]");
        assert_eq!(Path::root().to_string(), "<nil>");
    }

    #[test]
    fn the_invalid_sentence_lists_several_errors_in_brackets_once_each() {
        let a = FieldError::required("spec.a", "");
        let b = FieldError::required("spec.b", "");
        assert_eq!(
            invalid_message("X.g", "n", std::slice::from_ref(&a)),
            r#"X.g "n" is invalid: spec.a: Required value"#
        );
        assert_eq!(
            invalid_message("X.g", "n", &[a.clone(), b, a]),
            r#"X.g "n" is invalid: [spec.a: Required value, spec.b: Required value]"#
        );
    }
}
