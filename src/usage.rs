//! Reading token usage from provider answers: JSON bodies and SSE events, in the OpenAI
//! (chat/completions/embeddings), Responses and Anthropic shapes, normalised into [`Usage`].
//!
//! The tier the provider reports serving the answer at comes with it
//! ([`Usage::served_tier`]): OpenAI's top-level `service_tier` (chat and completions bodies,
//! the usage chunk of a stream, Responses `response.service_tier`), Anthropic's
//! `usage.service_tier`. It is an open set: any string is accepted, and a value of another
//! JSON type counts as not reported, so the tier never costs the usage.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::types::{ServedTier, Usage};

/// A reported `service_tier`, read leniently: a string is parsed ([`ServedTier::parse`]),
/// `null` or any other JSON value is "not reported", never an error.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Reported(Option<ServedTier>);

impl<'de> Deserialize<'de> for Reported {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReportedVisitor)
    }
}

/// A `deserialize_with` helper for a reported `service_tier` field, read as leniently as the
/// usage itself reads it (any string parses; another JSON value is `None`).
pub fn lenient_served_tier<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ServedTier>, D::Error> {
    Reported::deserialize(d).map(|r| r.0)
}

struct ReportedVisitor;

impl<'de> Visitor<'de> for ReportedVisitor {
    type Value = Reported;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Reported, E> {
        Ok(Reported(Some(ServedTier::parse(v))))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Reported, E> {
        Ok(Reported(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Reported, E> {
        Ok(Reported(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Reported, D::Error> {
        d.deserialize_any(ReportedVisitor)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Reported, E> {
        Ok(Reported(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Reported, E> {
        Ok(Reported(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Reported, E> {
        Ok(Reported(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Reported, E> {
        Ok(Reported(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Reported, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Reported(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Reported, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Reported(None))
    }
}

#[derive(Deserialize, Default)]
struct RawUsage {
    // OpenAI chat / completions / embeddings
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
    // OpenAI Responses and Anthropic
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<PromptDetails>,
    // Anthropic
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation: Option<CacheCreation>,
    /// Anthropic reports the served tier inside `usage` (`standard`, `priority`, `batch`).
    #[serde(default)]
    service_tier: Reported,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
}

#[derive(Deserialize, Default)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

impl RawUsage {
    /// The normalised usage; `outer` is the `service_tier` reported beside `usage` (OpenAI),
    /// used when `usage` itself names none (Anthropic names it inside).
    fn normalise(self, outer: Reported) -> Usage {
        let served_tier = self.service_tier.0.or(outer.0);
        if let Some(prompt) = self.prompt_tokens {
            // OpenAI: prompt_tokens includes cached and written tokens.
            let d = self.prompt_tokens_details.unwrap_or_default();
            let cached = d.cached_tokens.unwrap_or(0).min(prompt);
            let write = d.cache_write_tokens.unwrap_or(0).min(prompt - cached);
            return Usage {
                input_tokens: prompt - cached - write,
                cached_input_tokens: cached,
                cache_write_5m_tokens: write,
                cache_write_1h_tokens: 0,
                output_tokens: self.completion_tokens.unwrap_or(0),
                served_tier,
            };
        }
        let input = self.input_tokens.unwrap_or(0);
        if self.cache_read_input_tokens.is_some() || self.cache_creation_input_tokens.is_some() {
            // Anthropic: input_tokens excludes cache reads and writes.
            let created = self.cache_creation_input_tokens.unwrap_or(0);
            let (w5, w1) = match self.cache_creation {
                Some(c)
                    if c.ephemeral_5m_input_tokens.is_some()
                        || c.ephemeral_1h_input_tokens.is_some() =>
                {
                    (
                        c.ephemeral_5m_input_tokens.unwrap_or(0),
                        c.ephemeral_1h_input_tokens.unwrap_or(0),
                    )
                }
                _ => (created, 0),
            };
            return Usage {
                input_tokens: input,
                cached_input_tokens: self.cache_read_input_tokens.unwrap_or(0),
                cache_write_5m_tokens: w5,
                cache_write_1h_tokens: w1,
                output_tokens: self.output_tokens.unwrap_or(0),
                served_tier,
            };
        }
        // OpenAI Responses: input_tokens includes cached tokens.
        let cached = self
            .input_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
            .min(input);
        Usage {
            input_tokens: input - cached,
            cached_input_tokens: cached,
            output_tokens: self.output_tokens.unwrap_or(0),
            served_tier,
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<RawUsage>,
    /// OpenAI reports the served tier beside `usage` (chat, completions, Responses).
    #[serde(default)]
    service_tier: Reported,
    /// Responses API stream events carry the usage inside `response`.
    response: Option<Box<WithUsage>>,
    /// Anthropic's `message_start` carries it inside `message`.
    message: Option<Box<WithUsage>>,
    /// Present (possibly empty) on chat/completions chunks.
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

impl WithUsage {
    /// `usage` with the tier reported at its own level, else the same from `nested`
    /// (Responses `response`, Anthropic `message`).
    fn usage(self, nested: Option<Box<WithUsage>>) -> Option<Usage> {
        match self.usage {
            Some(u) => Some(u.normalise(self.service_tier)),
            None => {
                let n = nested?;
                n.usage.map(|u| u.normalise(n.service_tier))
            }
        }
    }
}

/// Usage from a complete JSON answer, if it reports any: OpenAI's and Anthropic's `usage`,
/// else Gemini's `usageMetadata` ([`from_gemini_json`]) — one reader for every answer the
/// gateway or a deferred job holds, whichever API it is in.
pub fn from_json(body: &[u8]) -> Option<Usage> {
    let mut w: WithUsage = serde_json::from_slice(body).ok()?;
    let nested = w.response.take();
    w.usage(nested).or_else(|| from_gemini_json(body))
}

/// The response header in which the Gemini API reports the tier it served (reference 3.2).
pub const GEMINI_SERVICE_TIER: &str = "x-gemini-service-tier";

/// The served tier a response header reports. The body's report, where there is one, is
/// the more specific; either way the reported tier is billed, never the requested one.
pub fn header_tier(headers: &http::HeaderMap) -> Option<ServedTier> {
    headers
        .get(GEMINI_SERVICE_TIER)
        .and_then(|v| v.to_str().ok())
        .map(|v| ServedTier::parse(v.trim()))
}

/// Gemini's `usageMetadata` (provider-apis.md 3.1), both ProtoJSON spellings.
#[derive(Deserialize, Default)]
struct GeminiUsage {
    #[serde(alias = "prompt_token_count")]
    #[serde(rename = "promptTokenCount")]
    prompt: Option<u64>,
    #[serde(alias = "cached_content_token_count")]
    #[serde(rename = "cachedContentTokenCount")]
    cached: Option<u64>,
    #[serde(alias = "candidates_token_count")]
    #[serde(rename = "candidatesTokenCount")]
    candidates: Option<u64>,
    #[serde(alias = "thoughts_token_count")]
    #[serde(rename = "thoughtsTokenCount")]
    thoughts: Option<u64>,
    #[serde(alias = "tool_use_prompt_token_count")]
    #[serde(rename = "toolUsePromptTokenCount")]
    tool_use_prompt: Option<u64>,
    #[serde(alias = "service_tier")]
    #[serde(rename = "serviceTier", default)]
    service_tier: Reported,
}

/// A `GenerateContentResponse` (or a stream chunk), or a Batch Mode result line whose
/// `response` holds one.
#[derive(Deserialize)]
struct WithGeminiUsage {
    #[serde(alias = "usage_metadata")]
    #[serde(rename = "usageMetadata")]
    usage: Option<GeminiUsage>,
    response: Option<Box<WithGeminiUsage>>,
}

/// Usage from a Gemini API answer (`generateContent`, one `streamGenerateContent` chunk — each
/// carries running totals, so the last one is the answer's — or a Batch Mode result line), if
/// it reports `usageMetadata`.
///
/// * `promptTokenCount` includes `cachedContentTokenCount`: uncached input = prompt − cached,
///   cached input = cached (so [`Usage::total_input`] is the prompt size the long-context
///   threshold is counted on);
/// * output = `candidatesTokenCount + thoughtsTokenCount`: thinking tokens are billed as output
///   ("Output price (including thinking tokens)");
/// * `toolUsePromptTokenCount` (tool results fed back to the model, part of `totalTokenCount`)
///   is added to the uncached input: how Google bills it is UNCONFIRMED, and counting it never
///   under-reports;
/// * `usageMetadata.serviceTier` (`standard`, `flex`, `priority`) is the served tier.
///
/// Zero-valued fields are omitted on the wire (ProtoJSON), so every count defaults to 0.
pub fn from_gemini_json(body: &[u8]) -> Option<Usage> {
    let w: WithGeminiUsage = serde_json::from_slice(body).ok()?;
    let u = match w.usage {
        Some(u) => u,
        None => w.response?.usage?,
    };
    let prompt = u.prompt.unwrap_or(0);
    let cached = u.cached.unwrap_or(0).min(prompt);
    Some(Usage {
        input_tokens: prompt - cached + u.tool_use_prompt.unwrap_or(0),
        cached_input_tokens: cached,
        output_tokens: u.candidates.unwrap_or(0) + u.thoughts.unwrap_or(0),
        served_tier: u.service_tier.0,
        ..Usage::default()
    })
}

/// What one SSE event's data says about usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventUsage {
    /// Carries no usage.
    None,
    /// Carries usage inside a chunk that also carries content (Responses `response.completed`).
    Within(Usage),
    /// The dedicated final usage chunk of a chat/completions stream (`choices: []`).
    UsageOnlyChunk(Usage),
}

/// Cheap pre-check before parsing: does `"usage"` appear followed by an object?
fn mentions_usage_object(data: &[u8]) -> bool {
    for pos in usage_finder().find_iter(data) {
        let rest = &data[pos + 7..];
        let mut it = rest.iter().skip_while(|b| b.is_ascii_whitespace());
        if it.next() == Some(&b':') && it.find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            return true;
        }
    }
    false
}

/// Inspects the `data:` payload of one SSE event.
pub fn from_event_data(data: &[u8]) -> EventUsage {
    if !mentions_usage_object(data) {
        return EventUsage::None;
    }
    let Ok(mut w) = serde_json::from_slice::<WithUsage>(data) else {
        return EventUsage::None;
    };
    let only = w.choices.as_ref().is_some_and(|c| c.is_empty());
    let (response, message) = (w.response.take(), w.message.take());
    match w.usage(response.or(message)) {
        Some(u) if only => EventUsage::UsageOnlyChunk(u),
        Some(u) => EventUsage::Within(u),
        None => EventUsage::None,
    }
}

/// One searcher for `"usage"` for the process (building one per body or event cost more than
/// the search).
pub(crate) fn usage_finder() -> &'static memchr::memmem::Finder<'static> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    &FINDER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_chat_usage_splits_cached_tokens() {
        let body = br#"{"id":"x","usage":{"prompt_tokens":2006,"completion_tokens":3,"total_tokens":2009,"prompt_tokens_details":{"cached_tokens":1920,"audio_tokens":0}}}"#;
        let u = from_json(body).unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 86,
                cached_input_tokens: 1920,
                output_tokens: 3,
                ..Usage::default()
            }
        );
    }

    #[test]
    fn embeddings_and_responses_and_anthropic() {
        let e = from_json(br#"{"usage":{"prompt_tokens":8,"total_tokens":8}}"#).unwrap();
        assert_eq!(
            e,
            Usage {
                input_tokens: 8,
                ..Usage::default()
            }
        );
        let r = from_json(br#"{"usage":{"input_tokens":100,"input_tokens_details":{"cached_tokens":40},"output_tokens":5}}"#).unwrap();
        assert_eq!(
            r,
            Usage {
                input_tokens: 60,
                cached_input_tokens: 40,
                output_tokens: 5,
                ..Usage::default()
            }
        );
        let a = from_json(br#"{"usage":{"input_tokens":10,"cache_creation_input_tokens":2000,"cache_read_input_tokens":0,"output_tokens":7,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2000}}}"#).unwrap();
        assert_eq!(
            a,
            Usage {
                input_tokens: 10,
                cache_write_1h_tokens: 2000,
                output_tokens: 7,
                ..Usage::default()
            }
        );
        assert_eq!(from_json(br#"{"error":{"message":"x"}}"#), None);
    }

    #[test]
    fn events_distinguish_usage_chunks() {
        assert_eq!(
            from_event_data(br#"{"choices":[{"delta":{"content":"\"usage\": {"}}],"usage":null}"#),
            EventUsage::None
        );
        let u = from_event_data(
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
        );
        assert_eq!(
            u,
            EventUsage::UsageOnlyChunk(Usage {
                input_tokens: 5,
                output_tokens: 2,
                ..Usage::default()
            })
        );
        let r = from_event_data(br#"{"type":"response.completed","response":{"usage":{"input_tokens":5,"output_tokens":2}}}"#);
        assert_eq!(
            r,
            EventUsage::Within(Usage {
                input_tokens: 5,
                output_tokens: 2,
                ..Usage::default()
            })
        );
    }

    fn tier_of(body: &[u8]) -> Option<ServedTier> {
        from_json(body).and_then(|u| u.served_tier)
    }

    #[test]
    fn openai_reports_the_served_tier_beside_usage() {
        let usage = r#""usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":12}"#;
        for (tier, want) in [
            ("default", ServedTier::Standard),
            ("flex", ServedTier::Flex),
            ("priority", ServedTier::Priority),
            ("fast", ServedTier::Priority),
            ("ultrafast", ServedTier::Ultrafast),
            ("scale", ServedTier::Scale),
            ("turbo-2027", ServedTier::Other),
        ] {
            let body = format!(r#"{{"id":"x",{usage},"service_tier":"{tier}"}}"#);
            assert_eq!(tier_of(body.as_bytes()), Some(want), "{tier}");
        }
        // Not a string, or absent: not reported, and the usage is still read.
        for tier in [
            "null",
            "42",
            "true",
            r#"{"name":"priority"}"#,
            r#"["flex"]"#,
        ] {
            let body = format!(r#"{{"service_tier":{tier},{usage}}}"#);
            let u = from_json(body.as_bytes());
            assert_eq!(u.map(|u| (u.input_tokens, u.served_tier)), Some((10, None)));
        }
        assert_eq!(tier_of(format!("{{{usage}}}").as_bytes()), None);
        // Responses: `service_tier` at the top level, or beside the nested usage.
        assert_eq!(
            tier_of(br#"{"object":"response","service_tier":"ultrafast","usage":{"input_tokens":5,"output_tokens":1}}"#),
            Some(ServedTier::Ultrafast)
        );
        assert_eq!(
            tier_of(br#"{"response":{"service_tier":"priority","usage":{"input_tokens":5,"output_tokens":1}}}"#),
            Some(ServedTier::Priority)
        );
    }

    #[test]
    fn anthropic_reports_the_served_tier_inside_usage() {
        let a = from_json(br#"{"type":"message","usage":{"input_tokens":10,"cache_read_input_tokens":4000,"output_tokens":7,"service_tier":"priority"}}"#).unwrap();
        assert_eq!(
            a,
            Usage {
                input_tokens: 10,
                cached_input_tokens: 4000,
                output_tokens: 7,
                served_tier: Some(ServedTier::Priority),
                ..Usage::default()
            }
        );
        assert_eq!(
            tier_of(br#"{"usage":{"input_tokens":1,"output_tokens":1,"service_tier":"batch"}}"#),
            Some(ServedTier::Batch)
        );
        let start = from_event_data(br#"{"type":"message_start","message":{"usage":{"input_tokens":14,"cache_read_input_tokens":0,"output_tokens":1,"service_tier":"standard"}}}"#);
        assert!(
            matches!(start, EventUsage::Within(u) if u.served_tier == Some(ServedTier::Standard)),
            "{start:?}"
        );
    }

    #[test]
    fn stream_events_carry_the_served_tier() {
        let chunk = from_event_data(
            br#"{"choices":[],"service_tier":"fast","usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#,
        );
        assert_eq!(
            chunk,
            EventUsage::UsageOnlyChunk(Usage {
                input_tokens: 5,
                output_tokens: 2,
                served_tier: Some(ServedTier::Priority),
                ..Usage::default()
            })
        );
        let done = from_event_data(
            br#"{"type":"response.completed","response":{"service_tier":"flex","usage":{"input_tokens":5,"output_tokens":2}}}"#,
        );
        assert!(
            matches!(done, EventUsage::Within(u) if u.served_tier == Some(ServedTier::Flex)),
            "{done:?}"
        );
        // An odd tier never hides the usage chunk (it is still stripped when Sluice asked).
        let odd = from_event_data(
            br#"{"choices":[],"service_tier":{"x":[1,2]},"usage":{"prompt_tokens":5,"completion_tokens":2}}"#,
        );
        assert!(matches!(odd, EventUsage::UsageOnlyChunk(u) if u.served_tier.is_none()));
    }

    #[test]
    fn gemini_usage_metadata_counts_thoughts_as_output() {
        // provider-apis.md 3.1 sample: 2110 prompt tokens of which 2048 cached, 7 candidates.
        let body = br#"{"candidates":[],"usageMetadata":{"promptTokenCount":2110,"cachedContentTokenCount":2048,"candidatesTokenCount":7,"totalTokenCount":2117},"modelVersion":"gemini-2.5-flash"}"#;
        let u = from_gemini_json(body).unwrap();
        assert_eq!(
            u,
            Usage {
                input_tokens: 62,
                cached_input_tokens: 2048,
                output_tokens: 7,
                ..Usage::default()
            }
        );
        assert_eq!(u.total_input(), 2110);
        // Thinking: 40 candidates + 300 thoughts = 340 output; tool-use prompt tokens are input
        // (UNCONFIRMED, never under-reported); served tier from usageMetadata.serviceTier.
        let body = br#"{"usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":40,"thoughtsTokenCount":300,"toolUsePromptTokenCount":25,"serviceTier":"flex"}}"#;
        let u = from_gemini_json(body).unwrap();
        assert_eq!(u.input_tokens, 1025);
        assert_eq!(u.cached_input_tokens, 0);
        assert_eq!(u.output_tokens, 340);
        assert_eq!(u.served_tier, Some(ServedTier::Flex));
        // snake_case spelling, and a Batch Mode result line (`response` holds the answer).
        let body = br#"{"key":"k1","response":{"usage_metadata":{"prompt_token_count":14,"candidates_token_count":1,"thoughts_token_count":2}}}"#;
        let u = from_gemini_json(body).unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (14, 3));
        // No usageMetadata, or cached larger than the prompt (clamped).
        assert_eq!(from_gemini_json(br#"{"candidates":[]}"#), None);
        assert_eq!(from_gemini_json(b"not json"), None);
        let u = from_gemini_json(
            br#"{"usageMetadata":{"promptTokenCount":5,"cachedContentTokenCount":9}}"#,
        )
        .unwrap();
        assert_eq!((u.input_tokens, u.cached_input_tokens), (0, 5));
    }

    #[test]
    fn any_answer_is_read_by_from_json_and_headers_report_a_tier() {
        // A Gemini answer (a deferred job's stored result is read through `from_json`).
        let body = br#"{"candidates":[],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":2}}"#;
        assert_eq!(from_json(body), from_gemini_json(body));
        assert!(from_json(body).is_some());
        // An OpenAI answer is still OpenAI's.
        let oai = br#"{"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        assert_eq!(from_json(oai).unwrap().input_tokens, 3);
        assert_eq!(from_json(br#"{"error":{"code":429}}"#), None);
        let mut h = http::HeaderMap::new();
        assert_eq!(header_tier(&h), None);
        h.insert(GEMINI_SERVICE_TIER, http::HeaderValue::from_static("Flex"));
        assert_eq!(header_tier(&h), Some(ServedTier::Flex));
    }
}
