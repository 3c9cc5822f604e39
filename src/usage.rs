//! Reading token usage from provider answers: JSON bodies and SSE events, in the OpenAI
//! (chat/completions/embeddings), Responses and Anthropic shapes, normalised into [`Usage`].

use serde::Deserialize;

use crate::types::Usage;

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
    fn normalise(self) -> Usage {
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
            ..Usage::default()
        }
    }
}

#[derive(Deserialize)]
struct WithUsage {
    usage: Option<RawUsage>,
    /// Responses API stream events carry the usage inside `response`.
    response: Option<Box<WithUsage>>,
    /// Anthropic's `message_start` carries it inside `message`.
    message: Option<Box<WithUsage>>,
    /// Present (possibly empty) on chat/completions chunks.
    choices: Option<Vec<serde::de::IgnoredAny>>,
}

/// Usage from a complete JSON answer, if it reports any.
pub fn from_json(body: &[u8]) -> Option<Usage> {
    let w: WithUsage = serde_json::from_slice(body).ok()?;
    w.usage
        .or_else(|| w.response.and_then(|r| r.usage))
        .map(RawUsage::normalise)
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
    let finder = memchr::memmem::find_iter(data, b"\"usage\"");
    for pos in finder {
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
    let Ok(w) = serde_json::from_slice::<WithUsage>(data) else {
        return EventUsage::None;
    };
    let only = w.choices.as_ref().is_some_and(|c| c.is_empty());
    let nested = w.response.or(w.message).and_then(|r| r.usage);
    match w.usage.or(nested) {
        Some(u) if only => EventUsage::UsageOnlyChunk(u.normalise()),
        Some(u) => EventUsage::Within(u.normalise()),
        None => EventUsage::None,
    }
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
}
