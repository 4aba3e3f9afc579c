//! `json_extract(text, path)`, Spark's `get_json_object`: the value a path
//! such as `$.order.items[0].sku` picks in a JSON text.

use serde_json::Value;

/// Longest path, in steps.
pub(crate) const MAX_JSON_PATH_STEPS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Field(String),
    Index(usize),
}

/// A parsed path: `$`, then `.name`, `['name']` or `[index]` steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses `path`; the error says what is wrong.
    pub(crate) fn parse(path: &str) -> Result<JsonPath, String> {
        let mut rest = path
            .strip_prefix('$')
            .ok_or("a path starts with $, e.g. '$.user.id'")?;
        let mut steps = Vec::new();
        while !rest.is_empty() {
            if steps.len() == MAX_JSON_PATH_STEPS {
                return Err(format!("a path has at most {MAX_JSON_PATH_STEPS} steps"));
            }
            if let Some(r) = rest.strip_prefix('.') {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                let name = &r[..end];
                if name.is_empty() || name == "*" {
                    return Err(format!(
                        "'.{name}' names no field (wildcards are not supported)"
                    ));
                }
                steps.push(Step::Field(name.to_string()));
                rest = &r[end..];
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').ok_or("a '[' without its ']'")?;
                let inside = r[..end].trim();
                let quoted = inside
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')));
                steps.push(match quoted {
                    Some(name) => Step::Field(name.to_string()),
                    None => Step::Index(inside.parse().map_err(|_| {
                        format!("'[{inside}]' is neither an index nor a quoted field name")
                    })?),
                });
                rest = &r[end + 1..];
            } else {
                return Err(format!("expected '.' or '[' at '{rest}'"));
            }
        }
        Ok(JsonPath { steps })
    }

    /// The value the path picks in `text`: a string as it is, another
    /// value as JSON text; `None` if `text` is not JSON, the path leads
    /// nowhere, or to a JSON null.
    pub(crate) fn extract(&self, text: &str) -> Option<String> {
        // serde_json stops at 128 levels of nesting: no deep recursion.
        let root: Value = serde_json::from_str(text).ok()?;
        let mut v = &root;
        for step in &self.steps {
            v = match step {
                Step::Field(name) => v.as_object()?.get(name)?,
                Step::Index(i) => v.as_array()?.get(*i)?,
            };
        }
        match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_pick_values_as_spark_does() {
        let text = r#"{"order": {"id": 7, "items": [{"sku": "a1", "qty": 2}, {"sku": "b"}],
                       "paid": true, "note": null, "my key": "x"}}"#;
        let get = |p: &str| JsonPath::parse(p).unwrap().extract(text);
        assert_eq!(get("$.order.id").as_deref(), Some("7"));
        assert_eq!(get("$.order.items[0].sku").as_deref(), Some("a1"));
        assert_eq!(get("$.order.items[1]").as_deref(), Some(r#"{"sku":"b"}"#));
        assert_eq!(get("$.order['my key']").as_deref(), Some("x"));
        assert_eq!(get("$.order.paid").as_deref(), Some("true"));
        assert_eq!(get("$.order.note"), None);
        assert_eq!(get("$.order.items[5]"), None);
        assert_eq!(get("$.order.id.x"), None);
        assert!(get("$").unwrap().starts_with(r#"{"order""#));
        assert_eq!(JsonPath::parse("$.a").unwrap().extract("not json"), None);
        // Nesting past serde_json's limit is not JSON to it: NULL, no
        // stack overflow.
        let deep = "[".repeat(100_000);
        assert_eq!(JsonPath::parse("$[0]").unwrap().extract(&deep), None);
    }

    #[test]
    fn bad_paths_are_refused_with_the_reason() {
        for (path, reason) in [
            ("a.b", "starts with $"),
            ("$.", "names no field"),
            ("$.*", "wildcards are not supported"),
            ("$[x]", "neither an index"),
            ("$[0", "without its ']'"),
            ("$a", "expected '.' or '['"),
        ] {
            let e = JsonPath::parse(path).unwrap_err();
            assert!(e.contains(reason), "{path}: {e}");
        }
        let long = format!("${}", ".a".repeat(MAX_JSON_PATH_STEPS + 1));
        assert!(JsonPath::parse(&long)
            .unwrap_err()
            .contains("at most 64 steps"));
    }
}
