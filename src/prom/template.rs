//! Query templates: `{{name}}` placeholders replaced by values, in one place, so the
//! resolved PromQL shown in status is exactly what was sent.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown placeholder {{{{{name}}}}} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("unclosed placeholder: '{{{{' without '}}}}' after {at:?}")]
    Unclosed { at: String },
}

/// Replaces every `{{name}}` (spaces inside the braces allowed) with `values[name]`.
/// An unknown name is an error, never left in the query.
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed {
                at: rest[start..].chars().take(20).collect(),
            });
        };
        let name = after[..end].trim();
        match values.get(name) {
            Some(v) => out.push_str(v),
            None => {
                return Err(TemplateError::Unknown {
                    name: name.to_string(),
                    known: values.keys().copied().collect::<Vec<_>>().join(", "),
                });
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        [
            ("namespace", "shop".to_string()),
            ("interval", "30s".to_string()),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn replaces_every_placeholder() {
        assert_eq!(
            render(
                r#"rate(x{namespace="{{namespace}}"}[{{ interval }}])"#,
                &values()
            )
            .unwrap(),
            r#"rate(x{namespace="shop"}[30s])"#
        );
        assert_eq!(
            render("no placeholders", &values()).unwrap(),
            "no placeholders"
        );
    }

    #[test]
    fn unknown_and_unclosed_placeholders_are_errors() {
        let e = render("x{h=\"{{canary_hash}}\"}", &values()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown placeholder {{canary_hash}} (known: interval, namespace)"
        );
        assert!(matches!(
            render("x{{namespace", &values()),
            Err(TemplateError::Unclosed { .. })
        ));
    }
}
