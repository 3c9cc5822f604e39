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
    Gemini,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::OpenAi, Provider::Anthropic, Provider::Gemini];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Gemini => "gemini",
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
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
    ];

    pub fn from_path(path: &str) -> Option<Endpoint> {
        match path {
            "/v1/chat/completions" => Some(Endpoint::ChatCompletions),
            "/v1/completions" => Some(Endpoint::Completions),
            "/v1/embeddings" => Some(Endpoint::Embeddings),
            "/v1/responses" => Some(Endpoint::Responses),
            "/v1/messages" => Some(Endpoint::Messages),
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
        }
    }

    /// The path below the provider's base URL (`https://api.openai.com/v1` + this).
    pub fn suffix(self) -> &'static str {
        &self.path()[3..]
    }

    /// The API family the caller speaks: the shape of its answers and errors.
    pub fn api(self) -> Api {
        match self {
            Endpoint::Messages => Api::Anthropic,
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
}
