//! Facts of a Gemini-native `GenerateContentRequest` body (provider-apis.md 3.1, 3.2). The
//! model and streaming come from the URL; the body says which service tier the caller
//! chose and what its stable prefix is. ProtoJSON: both camelCase and snake_case names,
//! `null` meaning absent.
//!
//! A top-level member sent twice (or under both spellings) is refused here: Google refuses
//! it too, and Sluice must not read a tier the provider would read differently.

use std::collections::HashSet;

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use serde_json::value::RawValue;
use xxhash_rust::xxh3::Xxh3;

use super::RequestFacts;
use crate::error::GatewayError;

/// The top-level members Sluice reads, each by its two spellings.
#[derive(Default)]
struct Probe<'a> {
    service_tier: Option<&'a RawValue>,
    tools: Option<&'a RawValue>,
    system_instruction: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Probe<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Probe<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a GenerateContentRequest JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Probe<'a>, A::Error> {
                let mut probe = Probe::default();
                let mut seen = HashSet::new();
                while let Some((k, raw)) =
                    m.next_entry::<std::borrow::Cow<'de, str>, &'de RawValue>()?
                {
                    let canonical = camel(&k);
                    if !seen.insert(canonical.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "field {canonical:?} is set more than once"
                        )));
                    }
                    // `null` is the field's default: absent (ProtoJSON).
                    let value = (raw.get() != "null").then_some(raw);
                    match canonical.as_str() {
                        "serviceTier" => probe.service_tier = value,
                        "tools" => probe.tools = value,
                        "systemInstruction" => probe.system_instruction = value,
                        _ => {}
                    }
                }
                Ok(probe)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A ProtoJSON name in lowerCamelCase (`service_tier` → `serviceTier`).
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses the body once. Not a JSON object, or a member repeated, is a 400 that says why.
pub fn inspect(model: &str, stream: bool, body: &[u8]) -> Result<RequestFacts, GatewayError> {
    let probe: Probe = serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(
            format!("the request body is not a valid GenerateContentRequest JSON object: {e}"),
            None,
        )
    })?;
    // The stable prefix, in Gemini's own order: tools, then the system instruction.
    let prefix_hash = (probe.tools.is_some() || probe.system_instruction.is_some()).then(|| {
        let mut h = Xxh3::new();
        for part in [probe.tools, probe.system_instruction]
            .into_iter()
            .flatten()
        {
            h.update(&(part.get().len() as u64).to_le_bytes());
            h.update(part.get().as_bytes());
        }
        h.digest128()
    });
    Ok(RequestFacts {
        model: model.to_owned(),
        stream,
        client_wants_usage: false,
        has_cache_key: false,
        has_service_tier: probe.service_tier.is_some(),
        service_tier_flex: probe
            .service_tier
            .is_some_and(|v| v.get().eq_ignore_ascii_case("\"flex\"")),
        prefix_hash,
        stream_options_span: None,
        cache_key_null: None,
        service_tier_null: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "gemini-2.5-flash";

    #[test]
    fn reads_the_tier_in_either_spelling_and_nulls_as_absent() {
        let f = inspect(M, true, br#"{"contents":[],"service_tier":"flex"}"#).unwrap();
        assert!(f.has_service_tier && f.service_tier_flex && f.stream);
        assert_eq!(f.model, M);
        let f = inspect(M, false, br#"{"contents":[],"serviceTier":"priority"}"#).unwrap();
        assert!(f.has_service_tier && !f.service_tier_flex);
        let f = inspect(M, false, br#"{"contents":null,"serviceTier":null}"#).unwrap();
        assert!(!f.has_service_tier && !f.stream);
        assert_eq!(f.prefix_hash, None);
    }

    #[test]
    fn the_prefix_is_tools_and_system_instruction() {
        let a = inspect(M, false, br#"{"systemInstruction":{"parts":[{"text":"S"}]},"contents":[{"parts":[{"text":"1"}]}]}"#).unwrap();
        let b = inspect(M, false, br#"{"system_instruction":{"parts":[{"text":"S"}]},"contents":[{"parts":[{"text":"2"}]}]}"#).unwrap();
        let c = inspect(
            M,
            false,
            br#"{"systemInstruction":{"parts":[{"text":"T"}]},"contents":[]}"#,
        )
        .unwrap();
        assert!(a.prefix_hash.is_some());
        assert_eq!(a.prefix_hash, b.prefix_hash);
        assert_ne!(a.prefix_hash, c.prefix_hash);
    }

    #[test]
    fn bad_bodies_and_repeated_members_are_400s() {
        for body in [
            &b"not json"[..],
            b"[1]",
            b"null",
            b"",
            br#"{"contents":[],"contents":[]}"#,
            br#"{"serviceTier":"flex","service_tier":"standard"}"#,
            br#"{"generationConfig":{},"generation_config":{}}"#,
        ] {
            let e = inspect(M, false, body).unwrap_err();
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{body:?}");
        }
    }
}
