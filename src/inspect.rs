//! Request inspection: one parse of the JSON body that pulls out what routing, triage,
//! cache hints and accounting need, and the byte-splicing rewrite that adds Sluice's own
//! fields (`prompt_cache_key`, `service_tier`, `stream_options.include_usage`) without
//! touching any other byte the client sent.
//!
//! A member the client sent as an explicit `null` (the OpenAI SDKs do for a `None`
//! argument) counts as absent, and Sluice's value replaces the `null` in place: the
//! provider never sees a key twice.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;
use xxhash_rust::xxh3::Xxh3;

use crate::error::GatewayError;
use crate::types::Endpoint;

pub mod gemini;

/// Longest model name accepted. Provider model ids are short; this bounds what a name
/// costs in the store, the logs and every map keyed by model.
pub const MAX_MODEL_BYTES: usize = 256;

/// What Sluice knows about a request body after one parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFacts {
    pub model: String,
    pub stream: bool,
    /// The client itself asked for the final usage chunk (`stream_options.include_usage`).
    pub client_wants_usage: bool,
    /// The client set `prompt_cache_key` (not null): Sluice then adds none.
    pub has_cache_key: bool,
    /// The client chose a `service_tier` itself (not null): Sluice never picks flex for it.
    pub has_service_tier: bool,
    /// The tier it chose is `flex` (answered with `x-sluice-tier: flex`, CONTRACT "Triage").
    pub service_tier_flex: bool,
    /// XXH3-128 over the stable prefix (tools, then leading system/developer messages,
    /// or Responses `instructions`); `None` when there is no such prefix. A fast, stable,
    /// non-cryptographic hash: it only picks a provider cache, and prompts can be large.
    pub prefix_hash: Option<u128>,
    /// Byte range of the client's `stream_options` value, when present (object or null).
    stream_options_span: Option<Range<usize>>,
    /// Byte ranges of explicit `null` values of the members Sluice may set.
    cache_key_null: Option<Range<usize>>,
    service_tier_null: Option<Range<usize>>,
}

/// A member whose presence matters even when its value is `null` (serde maps a `null`
/// into `Option::None`, which would hide it).
#[derive(Default, Clone, Copy)]
enum Member<'a> {
    #[default]
    Absent,
    Present(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for Member<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(Member::Present)
    }
}

impl<'a> Member<'a> {
    /// The value, unless absent or `null`.
    fn value(self) -> Option<&'a RawValue> {
        match self {
            Member::Present(r) if r.get() != "null" => Some(r),
            _ => None,
        }
    }

    fn null_span(self, body: &[u8]) -> Option<Range<usize>> {
        match self {
            Member::Present(r) if r.get() == "null" => Some(span_of(body, r)),
            _ => None,
        }
    }

    fn span(self, body: &[u8]) -> Option<Range<usize>> {
        match self {
            Member::Present(r) => Some(span_of(body, r)),
            Member::Absent => None,
        }
    }
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    #[serde(borrow, default)]
    stream_options: Member<'a>,
    #[serde(borrow, default)]
    prompt_cache_key: Member<'a>,
    #[serde(borrow, default)]
    service_tier: Member<'a>,
    #[serde(borrow)]
    messages: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    tools: Option<&'a RawValue>,
    #[serde(borrow)]
    instructions: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RoleProbe<'a> {
    #[serde(borrow)]
    role: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct StreamOptionsProbe {
    include_usage: Option<bool>,
}

fn span_of(body: &[u8], raw: &RawValue) -> Range<usize> {
    // A borrowed RawValue points into `body`, so its offset is a pointer difference.
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    start..start + raw.get().len()
}

/// Parses the body once. Invalid JSON or a missing `model` is a 400 that says why.
pub fn inspect(endpoint: Endpoint, body: &[u8]) -> Result<RequestFacts, GatewayError> {
    let probe: Probe = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(
            format!("the request body is not a valid JSON object: {e}"),
            None,
        )
    })?;
    let model = match probe.model {
        Some(m) if m.len() > MAX_MODEL_BYTES => {
            return Err(GatewayError::InvalidRequest {
                message: format!("model must be at most {MAX_MODEL_BYTES} bytes"),
                param: Some("model"),
                code: "invalid_model",
            });
        }
        Some(m) if !m.is_empty() => m.into_owned(),
        _ => {
            return Err(GatewayError::InvalidRequest {
                message: "you must provide a model parameter".into(),
                param: Some("model"),
                code: "missing_required_parameter",
            });
        }
    };
    let stream = probe.stream.unwrap_or(false);
    let client_wants_usage = match probe.stream_options.value() {
        Some(raw) => serde_json::from_str::<StreamOptionsProbe>(raw.get())
            .map_err(|e| {
                GatewayError::invalid(
                    format!("invalid stream_options: {e}"),
                    Some("stream_options"),
                )
            })?
            .include_usage
            .unwrap_or(false),
        None => false,
    };

    let mut hasher: Option<Xxh3> = None;
    let mut feed = |part: &[u8]| {
        let h = hasher.get_or_insert_with(Xxh3::new);
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    };
    if let Some(tools) = probe.tools {
        feed(tools.get().as_bytes());
    }
    if endpoint == Endpoint::Responses {
        if let Some(instr) = probe.instructions {
            feed(instr.get().as_bytes());
        }
    }
    for m in probe.messages.iter().flatten() {
        let role = serde_json::from_str::<RoleProbe>(m.get())
            .ok()
            .and_then(|r| r.role);
        match role.as_deref() {
            Some("system") | Some("developer") => feed(m.get().as_bytes()),
            _ => break,
        }
    }

    Ok(RequestFacts {
        model,
        stream,
        client_wants_usage,
        has_cache_key: probe.prompt_cache_key.value().is_some(),
        has_service_tier: probe.service_tier.value().is_some(),
        service_tier_flex: probe
            .service_tier
            .value()
            .is_some_and(|v| v.get() == "\"flex\""),
        prefix_hash: hasher.map(|h| h.digest128()),
        stream_options_span: probe.stream_options.span(body),
        cache_key_null: probe.prompt_cache_key.null_span(body),
        service_tier_null: probe.service_tier.null_span(body),
    })
}

/// What Sluice adds to a request on its way upstream.
#[derive(Debug, Default, Clone)]
pub struct Additions {
    pub prompt_cache_key: Option<String>,
    /// Ask for the final usage chunk (the client did not; Sluice strips it again).
    pub include_usage: bool,
    /// `service_tier: "flex"` (triage chose the flex tier).
    pub flex: bool,
}

impl Additions {
    pub fn is_empty(&self) -> bool {
        self.prompt_cache_key.is_none() && !self.include_usage && !self.flex
    }
}

/// The body sent upstream: the client's bytes with Sluice's members spliced in after the
/// opening brace, or written over the client's `null` for that member, and
/// `stream_options` replaced only when it must gain `include_usage`. Every other byte is
/// the client's.
pub fn rewrite(body: &Bytes, facts: &RequestFacts, add: &Additions) -> Bytes {
    if add.is_empty() {
        return body.clone();
    }
    let Some(open) = body.iter().position(|&b| b == b'{') else {
        return body.clone();
    };
    // New members go right after the opening brace; values written over a byte range of
    // the client's body (an explicit `null`) are applied in body order. Written straight into
    // the new body: this runs on every request that gets a cache hint.
    let mut out = BytesMut::with_capacity(body.len() + 128);
    out.extend_from_slice(&body[..=open]);
    let mut over: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut put = |name: &str, span: &Option<Range<usize>>, value: &[u8]| match span {
        Some(span) => over.push((span.clone(), value.to_vec())),
        None => {
            out.extend_from_slice(b"\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(value);
            out.extend_from_slice(b",");
        }
    };
    if let Some(key) = &add.prompt_cache_key {
        let mut v = Vec::with_capacity(key.len() + 2);
        // A JSON string: serializing a `str` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut v, key.as_str());
        put("prompt_cache_key", &facts.cache_key_null, &v);
    }
    if add.flex {
        put("service_tier", &facts.service_tier_null, b"\"flex\"");
    }
    if add.include_usage {
        // Keep the client's other stream options; only include_usage changes.
        let mut opts: serde_json::Map<String, serde_json::Value> = facts
            .stream_options_span
            .as_ref()
            .and_then(|span| serde_json::from_slice(&body[span.clone()]).ok())
            .unwrap_or_default();
        opts.insert("include_usage".into(), serde_json::Value::Bool(true));
        let v = serde_json::to_vec(&opts).unwrap_or_else(|_| b"{\"include_usage\":true}".to_vec());
        put("stream_options", &facts.stream_options_span, &v);
    }
    over.sort_by_key(|(span, _)| span.start);
    let mut at = open + 1;
    for (span, value) in over {
        out.extend_from_slice(&body[at..span.start]);
        out.extend_from_slice(&value);
        at = span.end;
    }
    out.extend_from_slice(&body[at..]);
    out.freeze()
}

/// The `prompt_cache_key` Sluice adds: stable for one client, route and prefix, so requests
/// sharing a prefix are routed to the same provider cache, and distinct across clients.
pub fn cache_key(client: &str, route: &str, prefix_hash: u128) -> String {
    let mut h = Xxh3::new();
    for part in [client.as_bytes(), route.as_bytes()] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.update(&prefix_hash.to_le_bytes());
    format!("sluice-{:032x}", h.digest128())
}

/// Removes top-level members from a JSON object, keeping every other byte as sent.
/// Used to drop `stream` / `stream_options` (a batch line must not stream).
pub fn without_members(body: &[u8], names: &[&str]) -> Result<Bytes, String> {
    struct Members<'a>(Vec<(std::borrow::Cow<'a, str>, &'a RawValue)>);
    impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                type Value = Members<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Self::Value, A::Error> {
                    let mut v = Vec::new();
                    while let Some((k, raw)) =
                        m.next_entry::<std::borrow::Cow<'de, str>, &'de RawValue>()?
                    {
                        v.push((k, raw));
                    }
                    Ok(Members(v))
                }
            }
            d.deserialize_map(V(std::marker::PhantomData))
        }
    }
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let members: Members = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !members.0.iter().any(|(k, _)| names.contains(&k.as_ref())) {
        return Ok(Bytes::copy_from_slice(body));
    }
    let mut out = BytesMut::with_capacity(body.len());
    out.put_u8(b'{');
    let mut first = true;
    for (k, v) in members
        .0
        .iter()
        .filter(|(k, _)| !names.contains(&k.as_ref()))
    {
        if !first {
            out.put_u8(b',');
        }
        first = false;
        out.extend_from_slice(serde_json::Value::from(k.as_ref()).to_string().as_bytes());
        out.put_u8(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.put_u8(b'}');
    Ok(out.freeze())
}

#[cfg(test)]
pub(crate) mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_stream_members_keeping_other_bytes() {
        let body = br#"{"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role":"user","content":"a\nb"}]}"#;
        let out = without_members(body, &["stream", "stream_options"]).unwrap();
        assert_eq!(
            &out[..],
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"a\nb"}]}"#
        );
        let untouched = br#"{"model": "x"}"#;
        assert_eq!(
            &without_members(untouched, &["stream"]).unwrap()[..],
            untouched
        );
        assert!(without_members(b"[1]", &["stream"]).is_err());
    }

    const CHAT: Endpoint = Endpoint::ChatCompletions;

    #[test]
    fn extracts_model_stream_and_prefix() {
        let body = br#"{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"S"},{"role":"user","content":"U"}]}"#;
        let f = inspect(CHAT, body).unwrap();
        assert_eq!(f.model, "gpt-4o");
        assert!(f.stream && !f.client_wants_usage && !f.has_cache_key);
        assert!(f.prefix_hash.is_some());
    }

    #[test]
    fn prefix_hash_ignores_the_user_turn_and_sees_tools() {
        let a = inspect(CHAT, br#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"one"}]}"#).unwrap();
        let b = inspect(CHAT, br#"{"model":"m","messages":[{"role":"system","content":"S"},{"role":"user","content":"two"}]}"#).unwrap();
        let c = inspect(CHAT, br#"{"model":"m","messages":[{"role":"system","content":"T"},{"role":"user","content":"one"}]}"#).unwrap();
        let d = inspect(CHAT, br#"{"model":"m","tools":[],"messages":[{"role":"system","content":"S"},{"role":"user","content":"one"}]}"#).unwrap();
        let none = inspect(
            CHAT,
            br#"{"model":"m","messages":[{"role":"user","content":"one"}]}"#,
        )
        .unwrap();
        assert_eq!(a.prefix_hash, b.prefix_hash);
        assert_ne!(a.prefix_hash, c.prefix_hash);
        assert_ne!(a.prefix_hash, d.prefix_hash);
        assert_eq!(none.prefix_hash, None);
    }

    #[test]
    fn bad_bodies_are_400s_naming_the_problem() {
        for (body, param) in [
            (&b"not json"[..], None),
            (b"[1,2]", None),
            (b"{\"messages\":[]}", Some("model")),
            (b"{\"model\":\"\"}", Some("model")),
            (
                b"{\"model\":\"m\",\"stream_options\":5}",
                Some("stream_options"),
            ),
        ] {
            let e = inspect(CHAT, body).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
            assert_eq!(
                e.openai_fields().1,
                param,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_model_name_is_bounded() {
        let ok = format!("{{\"model\":\"{}\"}}", "m".repeat(MAX_MODEL_BYTES));
        assert!(inspect(CHAT, ok.as_bytes()).is_ok());
        let long = format!("{{\"model\":\"{}\"}}", "m".repeat(MAX_MODEL_BYTES + 1));
        let e = inspect(CHAT, long.as_bytes()).unwrap_err();
        assert_eq!(e.openai_fields().1, Some("model"));
    }

    #[test]
    fn rewrite_only_adds_members() {
        let body = Bytes::from_static(b" {\"model\": \"gpt-4o\",\n \"messages\": [{\"role\":\"system\",\"content\":\"caf\\u00e9  \"}], \"stream\": true}");
        let f = inspect(CHAT, &body).unwrap();
        let add = Additions {
            prompt_cache_key: Some("k1".into()),
            include_usage: true,
            flex: false,
        };
        let out = rewrite(&body, &f, &add);
        let expected = " {\"prompt_cache_key\":\"k1\",\"stream_options\":{\"include_usage\":true},\"model\": \"gpt-4o\",\n \"messages\": [{\"role\":\"system\",\"content\":\"caf\\u00e9  \"}], \"stream\": true}";
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        assert_eq!(rewrite(&body, &f, &Additions::default()), body);
    }

    #[test]
    fn rewrite_keeps_other_stream_options() {
        let body = Bytes::from_static(b"{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_obfuscation\":false},\"messages\":[]}");
        let f = inspect(CHAT, &body).unwrap();
        let out = rewrite(
            &body,
            &f,
            &Additions {
                prompt_cache_key: None,
                include_usage: true,
                flex: true,
            },
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["service_tier"], "flex");
        assert_eq!(
            v["stream_options"],
            serde_json::json!({"include_obfuscation": false, "include_usage": true})
        );
        assert!(out.ends_with(b",\"messages\":[]}"));
    }

    #[test]
    fn any_caller_service_tier_is_the_callers_and_passes_through() {
        // The open set (provider-apis.md 1.3, 1.5) and values unknown to Sluice, of any JSON
        // type: each marks the request as the caller's tier and is never rewritten.
        for tier in [
            "\"auto\"",
            "\"default\"",
            "\"flex\"",
            "\"scale\"",
            "\"priority\"",
            "\"fast\"",
            "\"ultrafast\"",
            "\"turbo-2027\"",
            "\"\"",
            "42",
            "{\"name\":\"fast\"}",
        ] {
            for endpoint in [CHAT, Endpoint::Responses] {
                let body = Bytes::from(format!(
                    "{{\"model\":\"gpt-5\",\"service_tier\":{tier},\"input\":\"hi\",\"messages\":[]}}"
                ));
                let f = inspect(endpoint, &body).unwrap();
                assert!(f.has_service_tier, "{tier}");
                let add = Additions {
                    prompt_cache_key: Some("k".into()),
                    ..Additions::default()
                };
                let out = rewrite(&body, &f, &add);
                assert_eq!(&out[out.len() - body.len() + 1..], &body[1..], "{tier}");
            }
        }
        let f = inspect(CHAT, b"{\"model\":\"m\",\"service_tier\":null}").unwrap();
        assert!(!f.has_service_tier);
    }

    #[test]
    fn cache_key_is_stable_and_scoped() {
        let h = 7u128;
        assert_eq!(cache_key("a", "r", h), cache_key("a", "r", h));
        assert_ne!(cache_key("a", "r", h), cache_key("b", "r", h));
        assert_ne!(cache_key("a", "r", h), cache_key("a", "s", h));
        assert_ne!(cache_key("ab", "r", h), cache_key("a", "br", h));
        assert!(cache_key("a", "r", h).len() <= 64);
    }
}
