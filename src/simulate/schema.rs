//! Deterministic instances of JSON Schemas: the simulator's tool-call arguments and
//! structured outputs (OpenAI `tools[].function.parameters` and `response_format`
//! `json_schema`, Anthropic `input_schema`).
//!
//! Keywords are read in this order: `$ref` (local: `#`, `#/$defs/…`, `#/definitions/…`,
//! any JSON pointer into the root), `const`, `enum` (the first value), `allOf` (merged),
//! `anyOf` / `oneOf` (the first branch that does not re-enter a `$ref` being expanded),
//! then `type` (a string, or the first non-`null` entry of an array; inferred from the
//! other keywords when absent; `{}` for an empty schema):
//!
//! * object: every property in `properties` (optional ones only near the top and when
//!   they do not recurse), then any `required` name missing from it;
//! * array: `prefixItems`, then `items` up to `max(minItems, 1)` entries (none when the
//!   item recurses and `minItems` allows it), capped by `maxItems`; entries differ by their
//!   index (`"simulated-1"`, `2`, the next `enum` value) so `uniqueItems` usually holds;
//! * string: a sample value for common `format`s, else `"simulated"`, padded to
//!   `minLength`, cut to `maxLength`; `pattern` is not honoured;
//! * integer / number: `1` moved into `minimum` / `maximum` / the exclusive bounds and
//!   onto `multipleOf`; boolean: `true`; null: `null`.
//!
//! Depth, total size, `minItems` and `minLength` are bounded, so `$ref` cycles and hostile
//! schemas end; past a bound the value is minimal and may not validate.

use serde_json::{Map, Number, Value};

/// Deepest nesting expanded; deeper values are minimal.
const MAX_DEPTH: usize = 24;
/// Optional properties are filled in only above this depth.
const OPTIONAL_DEPTH: usize = 4;
/// Most schema nodes expanded for one instance.
const MAX_NODES: usize = 4_096;
/// Most entries of one array.
const MAX_ITEMS: u64 = 64;
/// Longest string.
const MAX_CHARS: u64 = 1_024;

/// The instance of `schema` (the root that local `$ref`s point into).
pub fn instance(schema: &Value) -> Value {
    let mut g = Gen {
        root: schema,
        // The root is being expanded: `{"$ref": "#"}` inside it is a cycle.
        refs: vec!["#".to_owned()],
        nodes: 0,
    };
    g.value(schema, 0, 0)
}

struct Gen<'r> {
    root: &'r Value,
    /// `$ref`s being expanded (the path from the root).
    refs: Vec<String>,
    nodes: usize,
}

/// The schema `{}`: anything.
const ANY: &Value = &Value::Bool(true);

fn empty_object() -> Value {
    Value::Object(Map::new())
}

impl Gen<'_> {
    /// Whether `schema` is a `$ref` already being expanded.
    fn cyclic(&self, schema: &Value) -> bool {
        schema
            .get("$ref")
            .and_then(Value::as_str)
            .is_some_and(|r| self.refs.iter().any(|x| x == r))
    }

    fn value(&mut self, schema: &Value, depth: usize, variant: u64) -> Value {
        self.nodes += 1;
        // `true`, `false` and non-schemas: an object is as good as anything.
        let Some(obj) = schema.as_object() else {
            return empty_object();
        };
        if depth >= MAX_DEPTH || self.nodes > MAX_NODES {
            return minimal(obj);
        }
        if let Some(r) = obj.get("$ref").and_then(Value::as_str) {
            if let Some(target) = resolve(self.root, r) {
                self.refs.push(r.to_owned());
                let v = self.value(target, depth + 1, variant);
                self.refs.pop();
                return v;
            }
        }
        if let Some(c) = obj.get("const") {
            return c.clone();
        }
        if let Some(Value::Array(values)) = obj.get("enum") {
            if !values.is_empty() {
                return values[index(variant, values.len())].clone();
            }
        }
        if let Some(Value::Array(parts)) = obj.get("allOf") {
            if !parts.is_empty() {
                let merged = self.merge(obj, parts);
                return self.value(&merged, depth + 1, variant);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = obj.get(key) {
                if let Some(first) = branches.first() {
                    let pick = branches.iter().find(|b| !self.cyclic(b)).unwrap_or(first);
                    return self.value(pick, depth + 1, variant);
                }
            }
        }
        match type_of(obj) {
            "object" => self.object(obj, depth, variant),
            "array" => self.array(obj, depth),
            "string" => string(obj, variant),
            "integer" => number(obj, variant, true),
            "number" => number(obj, variant, false),
            "boolean" => Value::Bool(variant % 2 == 0),
            "null" => Value::Null,
            _ => empty_object(),
        }
    }

    fn object(&mut self, obj: &Map<String, Value>, depth: usize, variant: u64) -> Value {
        let required: Vec<&str> = match obj.get("required") {
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut out = Map::new();
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (name, prop) in props {
                let needed = required.contains(&name.as_str());
                if !needed && (depth >= OPTIONAL_DEPTH || self.cyclic(prop)) {
                    continue;
                }
                let v = self.value(prop, depth + 1, variant);
                out.insert(name.clone(), v);
            }
        }
        let extra = match obj.get("additionalProperties") {
            Some(s @ Value::Object(_)) => s,
            _ => ANY,
        };
        for name in required {
            if !out.contains_key(name) {
                let v = self.value(extra, depth + 1, variant);
                out.insert(name.to_owned(), v);
            }
        }
        Value::Object(out)
    }

    fn array(&mut self, obj: &Map<String, Value>, depth: usize) -> Value {
        let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0);
        let max = obj
            .get("maxItems")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        // 2020-12 `prefixItems` + `items`, or draft-4 tuple `items` + `additionalItems`.
        let (tuple, rest): (&[Value], Option<&Value>) =
            match (obj.get("prefixItems"), obj.get("items")) {
                (Some(Value::Array(t)), items) => (t, items),
                (_, Some(Value::Array(t))) => (t, obj.get("additionalItems")),
                (_, items) => (&[], items),
            };
        let rest = match rest {
            Some(Value::Bool(false)) => None,
            Some(s) => Some(s),
            // No `items`: anything may follow.
            None => Some(ANY),
        };
        let natural = match rest {
            _ if !tuple.is_empty() => tuple.len() as u64,
            Some(item) if obj.contains_key("items") && !self.cyclic(item) => 1,
            _ => 0,
        };
        let mut count = natural.max(min).min(max).min(MAX_ITEMS);
        if rest.is_none() {
            count = count.min(tuple.len() as u64);
        }
        let items = (0..count)
            .map(|i| {
                let schema = usize::try_from(i)
                    .ok()
                    .and_then(|i| tuple.get(i))
                    .or(rest)
                    .unwrap_or(ANY);
                self.value(schema, depth + 1, i)
            })
            .collect();
        Value::Array(items)
    }

    /// `allOf` folded into one schema: `properties` and `required` united, any other
    /// keyword taken from the first part that has it (the outer schema first).
    fn merge(&self, outer: &Map<String, Value>, parts: &[Value]) -> Value {
        let mut merged: Map<String, Value> = outer
            .iter()
            .filter(|(k, _)| k.as_str() != "allOf")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for part in parts {
            // One level of `$ref` (Pydantic v1 wraps nested models as `allOf: [{$ref}]`).
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(self.root, r).unwrap_or(part),
                None => part,
            };
            let Some(part) = part.as_object() else {
                continue;
            };
            for (k, v) in part {
                match (k.as_str(), merged.get_mut(k), v) {
                    ("properties", Some(Value::Object(have)), Value::Object(add)) => {
                        for (name, s) in add {
                            have.entry(name.clone()).or_insert_with(|| s.clone());
                        }
                    }
                    ("required", Some(Value::Array(have)), Value::Array(add)) => {
                        for name in add {
                            if !have.contains(name) {
                                have.push(name.clone());
                            }
                        }
                    }
                    (_, None, _) => {
                        merged.insert(k.clone(), v.clone());
                    }
                    _ => {}
                }
            }
        }
        Value::Object(merged)
    }
}

/// A local `$ref` target: `#` or a JSON pointer after `#`.
fn resolve<'r>(root: &'r Value, reference: &str) -> Option<&'r Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        Some(root)
    } else {
        root.pointer(pointer)
    }
}

fn index(variant: u64, len: usize) -> usize {
    usize::try_from(variant).unwrap_or(0) % len.max(1)
}

/// The type to produce: `type` (first non-null of an array), else inferred.
fn type_of(obj: &Map<String, Value>) -> &str {
    match obj.get("type") {
        Some(Value::String(t)) => return t,
        Some(Value::Array(types)) => {
            let mut names = types.iter().filter_map(Value::as_str);
            if let Some(t) = names.clone().find(|t| *t != "null") {
                return t;
            }
            if names.next().is_some() {
                return "null";
            }
        }
        _ => {}
    }
    let has = |keys: &[&str]| keys.iter().any(|k| obj.contains_key(*k));
    if has(&["items", "prefixItems", "minItems", "maxItems", "contains"]) {
        "array"
    } else if has(&["minLength", "maxLength", "pattern", "format"]) {
        "string"
    } else if has(&[
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ]) {
        "number"
    } else {
        "object"
    }
}

/// The smallest value of the schema's type, for nodes past the bounds.
fn minimal(obj: &Map<String, Value>) -> Value {
    if let Some(c) = obj.get("const") {
        return c.clone();
    }
    if let Some(v) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return v.clone();
    }
    let nullable = |s: &Value| s.get("type").is_some_and(|t| t == "null");
    if let Some(Value::Array(branches)) = obj.get("anyOf").or_else(|| obj.get("oneOf")) {
        if branches.iter().any(nullable) {
            return Value::Null;
        }
    }
    match type_of(obj) {
        "array" => Value::Array(Vec::new()),
        "string" => Value::String(String::new()),
        "integer" | "number" => Value::from(0),
        "boolean" => Value::Bool(false),
        "null" => Value::Null,
        _ => empty_object(),
    }
}

fn string(obj: &Map<String, Value>, variant: u64) -> Value {
    let sample = match obj.get("format").and_then(Value::as_str) {
        Some("date-time") => "2025-01-01T00:00:00Z",
        Some("date") => "2025-01-01",
        Some("time") => "12:00:00Z",
        Some("duration") => "P1D",
        Some("email" | "idn-email") => "sim@example.com",
        Some("hostname" | "idn-hostname") => "example.com",
        Some("ipv4") => "127.0.0.1",
        Some("ipv6") => "::1",
        Some("uri" | "url" | "iri" | "uri-reference" | "iri-reference") => "https://example.com/",
        Some("uuid") => "00000000-0000-4000-8000-000000000000",
        _ => "",
    };
    let mut s = if !sample.is_empty() {
        sample.to_owned()
    } else if variant == 0 {
        "simulated".to_owned()
    } else {
        format!("simulated-{variant}")
    };
    let limit = |key: &str| obj.get(key).and_then(Value::as_u64);
    let min = limit("minLength").unwrap_or(0).min(MAX_CHARS);
    let len = s.chars().count() as u64;
    if len < min {
        s.extend(std::iter::repeat_n(
            'x',
            usize::try_from(min - len).unwrap_or(0),
        ));
    }
    if let Some(max) = limit("maxLength") {
        if let Some((cut, _)) = s
            .char_indices()
            .nth(usize::try_from(max).unwrap_or(usize::MAX))
        {
            s.truncate(cut);
        }
    }
    Value::String(s)
}

/// `(value, exclusive)` of a bound: 2020-12 numeric `exclusiveMinimum`, or draft-4
/// `minimum` with a boolean `exclusiveMinimum`.
fn bound(obj: &Map<String, Value>, inclusive: &str, exclusive: &str) -> Option<(f64, bool)> {
    match (
        obj.get(inclusive).and_then(Value::as_f64),
        obj.get(exclusive),
    ) {
        (_, Some(Value::Number(x))) => x.as_f64().map(|x| (x, true)),
        (Some(v), Some(Value::Bool(true))) => Some((v, true)),
        (Some(v), _) => Some((v, false)),
        (None, _) => None,
    }
}

fn number(obj: &Map<String, Value>, variant: u64, integer: bool) -> Value {
    let lo = bound(obj, "minimum", "exclusiveMinimum");
    let hi = bound(obj, "maximum", "exclusiveMaximum");
    // The integer range the bounds allow (integers are valid numbers too).
    let lo_int = lo.map(|(v, ex)| if ex { v.floor() + 1.0 } else { v.ceil() });
    let hi_int = hi.map(|(v, ex)| if ex { v.ceil() - 1.0 } else { v.floor() });
    let step = variant as f64;
    let mut v = match (lo_int, hi_int) {
        (Some(lo), _) => lo + step,
        (None, Some(hi)) if hi < 1.0 => hi - step,
        _ => 1.0 + step,
    };
    if let Some(hi) = hi_int {
        v = v.min(hi);
    }
    if let Some(lo) = lo_int {
        v = v.max(lo);
    }
    if let Some(m) = obj
        .get("multipleOf")
        .and_then(Value::as_f64)
        .filter(|m| *m > 0.0)
    {
        v = (v / m).ceil() * m;
        if hi_int.is_some_and(|hi| v > hi) {
            v = (hi_int.unwrap_or(v) / m).floor() * m;
        }
    }
    let fits = |v: f64| {
        lo.is_none_or(|(l, ex)| if ex { v > l } else { v >= l })
            && hi.is_none_or(|(h, ex)| if ex { v < h } else { v <= h })
    };
    if !integer && !fits(v) {
        // No integer between the bounds (e.g. 0 < x < 1): their midpoint.
        if let (Some((l, _)), Some((h, _))) = (lo, hi) {
            v = l + (h - l) / 2.0;
        }
    }
    to_json(v, integer)
}

fn to_json(v: f64, integer: bool) -> Value {
    // i64 range as f64 bounds; `as` saturates anyway.
    const LIMIT: f64 = 9.0e18;
    if v.fract() == 0.0 && v.abs() < LIMIT {
        return Value::from(v as i64);
    }
    if integer {
        return Value::from(if v.is_sign_negative() {
            i64::MIN
        } else {
            i64::MAX
        });
    }
    Number::from_f64(v).map_or(Value::from(0), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_honour_their_keywords() {
        assert_eq!(instance(&json!({"type": "string"})), json!("simulated"));
        assert_eq!(
            instance(&json!({"type": "string", "minLength": 12})),
            json!("simulatedxxx")
        );
        assert_eq!(
            instance(&json!({"type": "string", "maxLength": 3})),
            json!("sim")
        );
        assert_eq!(
            instance(&json!({"type": "string", "format": "date"})),
            json!("2025-01-01")
        );
        assert_eq!(instance(&json!({"type": "integer"})), json!(1));
        assert_eq!(
            instance(&json!({"type": "integer", "minimum": 10, "maximum": 20})),
            json!(10)
        );
        assert_eq!(
            instance(&json!({"type": "integer", "exclusiveMaximum": 0})),
            json!(-1)
        );
        assert_eq!(
            instance(&json!({"type": "integer", "minimum": 5, "multipleOf": 4})),
            json!(8)
        );
        assert_eq!(
            instance(&json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1})),
            json!(0.5)
        );
        assert_eq!(instance(&json!({"type": "boolean"})), json!(true));
        assert_eq!(instance(&json!({"type": ["null", "integer"]})), json!(1));
        assert_eq!(instance(&json!({"type": "null"})), json!(null));
        assert_eq!(instance(&json!({"enum": ["b", "a"]})), json!("b"));
        assert_eq!(instance(&json!({"const": {"k": 1}})), json!({"k": 1}));
    }

    #[test]
    fn odd_schemas_give_bounded_values() {
        for odd in [
            json!(null),
            json!(true),
            json!({}),
            json!("string"),
            json!({"type": 7}),
            json!({"enum": []}),
            json!({"anyOf": []}),
            json!({"$ref": "#/nowhere"}),
        ] {
            assert_eq!(instance(&odd), json!({}), "{odd}");
        }
        let huge = instance(&json!({"type": "array", "minItems": 1_000_000_000u64}));
        assert_eq!(huge.as_array().map(Vec::len), Some(MAX_ITEMS as usize));
        // Self-recursion through a required property ends at the depth bound.
        let cycle =
            json!({"type": "object", "required": ["next"], "properties": {"next": {"$ref": "#"}}});
        let mut v = &instance(&cycle);
        let mut depth = 0;
        while let Some(next) = v.get("next") {
            v = next;
            depth += 1;
        }
        assert!(depth > 2 && depth <= MAX_DEPTH, "{depth}");
        assert_eq!(instance(&json!({"$ref": "#"})), json!({}));
    }
}
