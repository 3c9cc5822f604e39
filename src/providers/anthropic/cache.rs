//! Automatic prompt-cache breakpoints for Anthropic, whose caching is explicit: when the
//! client placed no `cache_control` and the stable prefix (tools, then system) is long
//! enough to be cached for the model, a breakpoint goes at the end of each part of it.
//! Content never changes; a string `system` becomes one text block carrying the breakpoint.

use serde_json::{Value, json};

/// Anthropic allows at most this many breakpoints; Sluice adds at most two.
pub const MAX_BREAKPOINTS: usize = 4;

/// Minimum cacheable prompt length in tokens, per model (provider-apis.md 2.3, 2026
/// snapshot); below it nothing is cached, so no breakpoint is worth adding.
pub fn min_cacheable_tokens(model: &str) -> u64 {
    const TABLE: [(&str, u64); 7] = [
        ("claude-opus-4-6", 4096),
        ("claude-opus-4-5", 4096),
        ("claude-haiku-4-5", 4096),
        ("claude-sonnet-4-6", 2048),
        ("claude-3-5-haiku", 2048),
        ("claude-3-haiku", 2048),
        ("claude-sonnet-4-5", 1024),
    ];
    TABLE
        .iter()
        .find(|(prefix, _)| model.starts_with(prefix))
        .map_or(1024, |(_, n)| *n)
}

/// Rough token count of JSON text (4 bytes a token), enough to decide on a breakpoint.
fn tokens(v: &Value) -> u64 {
    (v.to_string().len() as u64).div_ceil(4)
}

fn has_cache_control(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.contains_key("cache_control") || m.values().any(has_cache_control),
        Value::Array(a) => a.iter().any(has_cache_control),
        _ => false,
    }
}

/// Adds breakpoints to a Messages request body; returns whether it changed anything.
/// `ttl` is `"5m"` (interactive) or `"1h"` (batches, which can run far apart).
pub fn add_breakpoints(body: &mut Value, model: &str, ttl: &str) -> bool {
    if has_cache_control(body) {
        return false;
    }
    let prefix = body.get("tools").map_or(0, tokens) + body.get("system").map_or(0, tokens);
    if prefix < min_cacheable_tokens(model) {
        return false;
    }
    let marker = if ttl == "5m" {
        json!({"type": "ephemeral"})
    } else {
        json!({"type": "ephemeral", "ttl": ttl})
    };
    let mut added = 0;
    if let Some(last) = body
        .get_mut("tools")
        .and_then(Value::as_array_mut)
        .and_then(|t| t.last_mut())
    {
        if let Some(o) = last.as_object_mut() {
            o.insert("cache_control".into(), marker.clone());
            added += 1;
        }
    }
    if let Some(system) = body.get_mut("system") {
        if let Value::String(text) = system {
            *system = json!([{"type": "text", "text": std::mem::take(text)}]);
        }
        if let Some(o) = system
            .as_array_mut()
            .and_then(|b| b.last_mut())
            .and_then(Value::as_object_mut)
        {
            o.insert("cache_control".into(), marker);
            added += 1;
        }
    }
    debug_assert!(added <= MAX_BREAKPOINTS);
    added > 0
}

/// The same on raw bytes; `None` when nothing changed or the body is not JSON.
pub fn with_breakpoints(body: &[u8], model: &str, ttl: &str) -> Option<bytes::Bytes> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    add_breakpoints(&mut v, model, ttl).then(|| bytes::Bytes::from(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(n: usize) -> String {
        "policy text ".repeat(n)
    }

    #[test]
    fn breakpoints_end_the_tools_and_the_system_prompt() {
        let mut b = json!({"model": "claude-sonnet-4-5", "system": long(500), "tools": [{"name": "a", "input_schema": {}}, {"name": "b", "input_schema": {}}],
            "messages": [{"role": "user", "content": "hi"}]});
        let system_text = b["system"].clone();
        assert!(add_breakpoints(&mut b, "claude-sonnet-4-5", "5m"));
        assert_eq!(b["system"][0]["text"], system_text, "content unchanged");
        assert_eq!(
            b["system"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(b["tools"][1]["cache_control"], json!({"type": "ephemeral"}));
        assert!(b["tools"][0].get("cache_control").is_none());
        assert!(b["messages"][0].get("cache_control").is_none());
    }

    #[test]
    fn batches_use_the_one_hour_cache() {
        let mut b = json!({"system": [{"type": "text", "text": long(500)}], "messages": []});
        assert!(add_breakpoints(&mut b, "claude-sonnet-4-5", "1h"));
        assert_eq!(
            b["system"][0]["cache_control"],
            json!({"type": "ephemeral", "ttl": "1h"})
        );
    }

    #[test]
    fn nothing_when_the_client_placed_breakpoints_or_the_prefix_is_short() {
        let mut own = json!({"system": long(500), "messages": [{"role": "user", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}]});
        assert!(!add_breakpoints(&mut own, "claude-sonnet-4-5", "5m"));
        let mut top =
            json!({"cache_control": {"type": "ephemeral"}, "system": long(500), "messages": []});
        assert!(!add_breakpoints(&mut top, "claude-sonnet-4-5", "5m"));
        let mut short = json!({"system": "be brief", "messages": []});
        assert!(!add_breakpoints(&mut short, "claude-sonnet-4-5", "5m"));
        // Haiku 4.5 needs 4,096 tokens: 1,500 are not enough.
        let mut mid = json!({"system": long(500), "messages": []});
        assert!(!add_breakpoints(&mut mid, "claude-haiku-4-5", "5m"));
        assert_eq!(min_cacheable_tokens("claude-haiku-4-5-20251001"), 4096);
    }
}
