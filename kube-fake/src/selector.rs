//! Label selectors (`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
//! `a notin (x,y)`) and the `metadata.name` / `metadata.namespace` field
//! selectors, as the API server evaluates them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// The field labels a field selector may name.
const FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn set(values: &str) -> Result<Vec<String>, String> {
    let inner = values
        .trim()
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| format!("set {values:?} needs parentheses"))?;
    Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
}

impl Selector {
    /// Parses a selector; an error is the API server's 400.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let requirement = if let Some((k, v)) = part.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), set(v)?)
            } else if let Some((k, v)) = part.split_once(" in ") {
                Requirement::In(k.trim().into(), set(v)?)
            } else if let Some(k) = part.strip_prefix('!') {
                Requirement::NotExists(k.trim().into())
            } else if part
                .chars()
                .all(|c| c.is_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(part.into())
            } else {
                return Err(format!("unable to parse requirement {part:?}"));
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    /// Whether `labels` (a JSON object, or null) satisfies every requirement.
    pub fn matches_labels(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
        })
    }

    /// Parses a field selector. Only `metadata.name` and `metadata.namespace`
    /// (what kube-rs watchers of one object use) with `=`, `==`, `!=` are
    /// modelled; anything else is refused, as the API server refuses a field
    /// label a kind does not support, rather than silently matching nothing.
    pub fn parse_fields(text: &str) -> Result<Self, String> {
        let selector = Self::parse(text)?;
        for r in &selector.0 {
            match r {
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _)
                    if FIELDS.contains(&k.as_str()) => {}
                Requirement::Equals(k, _) | Requirement::NotEquals(k, _) => {
                    return Err(format!(
                        "field label not supported: {k} (kube-fake models {})",
                        FIELDS.join(", ")
                    ))
                }
                other => {
                    return Err(format!(
                    "invalid field selector requirement {other:?}: only =, == and != are allowed"
                ))
                }
            }
        }
        Ok(selector)
    }

    /// Whether `object` satisfies a selector from [`Self::parse_fields`].
    pub fn matches_fields(&self, object: &Value) -> bool {
        let get = |k: &str| match k {
            "metadata.name" => object["metadata"]["name"].as_str(),
            "metadata.namespace" => object["metadata"]["namespace"].as_str(),
            _ => None,
        };
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            _ => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equality_existence_and_sets_match_like_the_api_server() {
        let labels = json!({"app": "api", "tier": "web"});
        let m = |s: &str| Selector::parse(s).unwrap().matches_labels(&labels);
        assert!(m(""));
        assert!(m("app=api"));
        assert!(m("app==api,tier"));
        assert!(!m("app!=api"));
        assert!(m("!missing"));
        assert!(!m("missing"));
        assert!(m("tier in (db,web)"));
        assert!(!m("tier notin (db,web)"));
        assert!(m("app=api,tier in (web)"));
        assert!(Selector::parse("a in b").is_err());
    }

    #[test]
    fn unmodelled_field_labels_are_refused_not_matched_as_nothing() {
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}});
        let f = Selector::parse_fields("metadata.name=p,metadata.namespace!=other").unwrap();
        assert!(f.matches_fields(&pod));
        let e = Selector::parse_fields("spec.nodeName=n1").unwrap_err();
        assert!(
            e.contains("field label not supported: spec.nodeName"),
            "{e}"
        );
        assert!(Selector::parse_fields("metadata.name in (p)").is_err());
    }
}
