//! Small shared vocabulary: tiers, levers, providers and normalised token usage.
//! Leaf module: imports nothing from the rest of the crate.

use std::fmt;

/// How a request is served. Cheapest first where the SLA allows (see CONTRACT.md "Triage").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    ResponseCache,
    Batch,
    Flex,
    Interactive,
}

impl Tier {
    pub const ALL: [Tier; 4] = [
        Tier::ResponseCache,
        Tier::Batch,
        Tier::Flex,
        Tier::Interactive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::ResponseCache => "response_cache",
            Tier::Batch => "batch",
            Tier::Flex => "flex",
            Tier::Interactive => "interactive",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a saving is attributed to (the `lever` metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lever {
    Batch,
    Flex,
    PromptCache,
    ResponseCache,
}

impl Lever {
    pub fn as_str(self) -> &'static str {
        match self {
            Lever::Batch => "batch",
            Lever::Flex => "flex",
            Lever::PromptCache => "prompt_cache",
            Lever::ResponseCache => "response_cache",
        }
    }
}

/// An upstream provider. Static dispatch: three providers do not need a trait object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    OpenAi,
    Anthropic,
    /// The Gemini API with an API key.
    Gemini,
    /// Gemini models on Vertex AI with a service account (a policy sends models to it).
    Vertex,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::Vertex,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
            Provider::Vertex => "vertex",
        }
    }

    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The service tier a provider says it served an answer at: OpenAI's `service_tier` in the
/// response body (the last stream chunk, Responses `response.service_tier`), Anthropic's
/// `usage.service_tier`. An open set: any string parses, values Sluice does not know are
/// [`ServedTier::Other`]. Not a metric label (the `tier` label is [`Tier`]'s closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServedTier {
    /// OpenAI `default` (and `auto`, should it ever be reported), Anthropic and Gemini
    /// `standard`.
    Standard,
    /// `flex`: billed at flex rates.
    Flex,
    /// `priority`, or `fast` (its name since 2026-07-30): billed at priority rates.
    Priority,
    /// OpenAI `ultrafast` (Responses API).
    Ultrafast,
    /// OpenAI Scale Tier: priced by contract, billed at standard list rates here.
    Scale,
    /// Anthropic `batch` (Message Batches).
    Batch,
    /// Any other value.
    Other,
}

impl ServedTier {
    /// Parses a reported tier, ignoring ASCII case; never fails.
    pub fn parse(s: &str) -> ServedTier {
        const NAMES: [(&str, ServedTier); 9] = [
            ("default", ServedTier::Standard),
            ("auto", ServedTier::Standard),
            ("standard", ServedTier::Standard),
            ("flex", ServedTier::Flex),
            ("priority", ServedTier::Priority),
            ("fast", ServedTier::Priority),
            ("ultrafast", ServedTier::Ultrafast),
            ("scale", ServedTier::Scale),
            ("batch", ServedTier::Batch),
        ];
        NAMES
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map_or(ServedTier::Other, |(_, t)| *t)
    }

    /// A name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ServedTier::Standard => "standard",
            ServedTier::Flex => "flex",
            ServedTier::Priority => "priority",
            ServedTier::Ultrafast => "ultrafast",
            ServedTier::Scale => "scale",
            ServedTier::Batch => "batch",
            ServedTier::Other => "other",
        }
    }
}

impl fmt::Display for ServedTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Token usage normalised across providers. The four input buckets are disjoint:
/// `input_tokens` is only the input billed at the full input rate (OpenAI's `prompt_tokens`
/// minus cached and written tokens; Anthropic's `input_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    /// Tokens written to a 5-minute (default) prompt cache.
    pub cache_write_5m_tokens: u64,
    /// Tokens written to a 1-hour prompt cache (Anthropic `ttl: "1h"`).
    pub cache_write_1h_tokens: u64,
    pub output_tokens: u64,
    /// The tier the provider reported serving the answer at; `None` when it said nothing
    /// (embeddings, a stream cut before its usage, a usage read back from the store).
    pub served_tier: Option<ServedTier>,
}

impl Usage {
    /// All prompt tokens, whatever rate they are billed at.
    pub fn total_input(&self) -> u64 {
        self.input_tokens
            + self.cached_input_tokens
            + self.cache_write_5m_tokens
            + self.cache_write_1h_tokens
    }
}

/// The OpenAI-compatible endpoints Sluice proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic's native Messages API (Anthropic SDK clients).
    Messages,
    /// Gemini's native `models/{model}:generateContent` and `:streamGenerateContent`
    /// (`google-genai` SDK clients): the model is in the URL and streaming is the verb, so
    /// neither is in the body.
    GenerateContent,
}

impl Endpoint {
    pub const ALL: [Endpoint; 6] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
        Endpoint::GenerateContent,
    ];

    /// The endpoint of a fixed path, or of [`Endpoint::path`] (what the store keeps). Real
    /// Gemini-native paths name their model and are parsed by the gateway.
    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/v1/responses" => Some(Endpoint::Responses),
            "/v1/messages" => Some(Endpoint::Messages),
            GENERATE_CONTENT_PATH => Some(Endpoint::GenerateContent),
            _ => None,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
            Endpoint::Responses => "/v1/responses",
            Endpoint::Messages => "/v1/messages",
            Endpoint::GenerateContent => GENERATE_CONTENT_PATH,
        }
    }

    /// The path below the provider's base URL (`https://api.openai.com/v1` + this); the
    /// Gemini-native endpoint has none without its model (`providers::path`).
    pub fn suffix(self) -> &'static str {
        match self {
            Endpoint::GenerateContent => "",
            other => &other.path()[3..],
        }
    }

    /// The API family the caller speaks: the shape of its answers and errors.
    pub fn api(self) -> Api {
        match self {
            Endpoint::Messages => Api::Anthropic,
            Endpoint::GenerateContent => Api::Gemini,
            _ => Api::OpenAi,
        }
    }

    /// Streams whose usage needs `stream_options.include_usage` to be reported.
    pub fn takes_stream_options(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions)
    }
}

/// The API a caller speaks, which decides the shape of every answer and error it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Api {
    OpenAi,
    Anthropic,
    /// Google's Gemini API (errors `{"error":{"code","message","status"}}`).
    Gemini,
}

/// The one path naming [`Endpoint::GenerateContent`], streamed or not: what policies'
/// `paths` match and the store records.
pub const GENERATE_CONTENT_PATH: &str = "/v1beta/models/{model}:generateContent";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_path_names_it_again() {
        // What the store keeps and policies match.
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::from_path(e.path()), Some(e), "{e:?}");
        }
        assert_eq!(Endpoint::GenerateContent.api(), Api::Gemini);
        assert_eq!(Endpoint::GenerateContent.suffix(), "");
        assert!(!Endpoint::GenerateContent.takes_stream_options());
    }

    #[test]
    fn served_tiers_parse_leniently() {
        for (s, t) in [
            ("default", ServedTier::Standard),
            ("auto", ServedTier::Standard),
            ("standard", ServedTier::Standard),
            ("flex", ServedTier::Flex),
            ("priority", ServedTier::Priority),
            ("fast", ServedTier::Priority),
            ("Fast", ServedTier::Priority),
            ("ultrafast", ServedTier::Ultrafast),
            ("scale", ServedTier::Scale),
            ("batch", ServedTier::Batch),
            ("", ServedTier::Other),
            ("fastest", ServedTier::Other),
            ("SERVICE_TIER_FLEX", ServedTier::Other),
        ] {
            assert_eq!(ServedTier::parse(s), t, "{s:?}");
        }
        assert_eq!(Usage::default().served_tier, None);
    }
}
