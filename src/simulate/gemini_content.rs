//! The `GenerateContentRequest` of the native Gemini API (reference 3.1): ProtoJSON
//! reading (camelCase or snake_case names, `null` as absent, unknown names refused),
//! validation, token counting, implicit caching and the `GenerateContentResponse` /
//! stream chunks. Shared by `generateContent`, `streamGenerateContent` and Batch Mode.

use serde_json::{Map, Value, json};

use super::Simulator;
use super::cache::Prompt;
use super::chat::ANSWER_PREFIX;
use super::gemini::GemError;
use super::text::{Answer, tokens, tokens_of_len, write_canonical};

/// A message type's fields as (lowerCamelCase, snake_case) pairs.
pub type Fields = &'static [(&'static str, &'static str)];

/// `value` as an object whose keys are all `fields` (either spelling, not both); `at`
/// names it in errors (`contents[0].parts[0]`).
pub fn object<'a>(
    value: &'a Value,
    at: &str,
    fields: Fields,
) -> Result<&'a Map<String, Value>, GemError> {
    let Value::Object(map) = value else {
        return Err(if at.is_empty() {
            GemError::unparsable(
                "Invalid JSON payload received. Unknown name \"\": Root element must be a message.",
                None,
            )
        } else {
            GemError::invalid_value(at, "message", value)
        });
    };
    for key in map.keys() {
        if !fields.iter().any(|(c, s)| key == c || key == s) {
            return Err(GemError::unknown_name(key, at));
        }
    }
    for (camel, snake) in fields {
        let set = |k: &str| map.get(k).is_some_and(|v| !v.is_null());
        if camel != snake && set(camel) && set(snake) {
            return Err(GemError::unparsable(
                format!(
                    "Invalid JSON payload received. Duplicate field \"{snake}\" (sent as \"{camel}\" and \"{snake}\")."
                ),
                Some(&join(at, snake)),
            ));
        }
    }
    Ok(map)
}

/// A field by either spelling; `null` counts as absent.
pub fn get<'a>(map: &'a Map<String, Value>, (camel, snake): (&str, &str)) -> Option<&'a Value> {
    map.get(camel)
        .filter(|v| !v.is_null())
        .or_else(|| map.get(snake).filter(|v| !v.is_null()))
}

/// `parent.child` for error paths.
pub fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

/// An integer field: a JSON number or a decimal string (int64 values are strings).
pub fn int(value: &Value, at: &str, kind: &str) -> Result<i64, GemError> {
    let n = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| GemError::invalid_value(at, kind, value))
}

/// A string field.
pub fn string<'a>(value: &'a Value, at: &str) -> Result<&'a str, GemError> {
    value
        .as_str()
        .ok_or_else(|| GemError::invalid_value(at, "TYPE_STRING", value))
}

/// An array field.
fn array<'a>(value: &'a Value, at: &str) -> Result<&'a [Value], GemError> {
    value
        .as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| GemError::invalid_value(at, "repeated", value))
}

/// Parses a JSON body (an empty body is an empty message); repeated keys are refused.
pub fn parse_body(body: &[u8]) -> Result<Value, GemError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    crate::strict_json::parse(body)
        .map_err(|e| GemError::unparsable(format!("Invalid JSON payload received. {e}"), None))
}

const REQUEST: Fields = &[
    ("cachedContent", "cached_content"),
    ("contents", "contents"),
    ("generationConfig", "generation_config"),
    ("model", "model"),
    ("safetySettings", "safety_settings"),
    ("serviceTier", "service_tier"),
    ("systemInstruction", "system_instruction"),
    ("toolConfig", "tool_config"),
    ("tools", "tools"),
];

const GENERATION_CONFIG: Fields = &[
    ("candidateCount", "candidate_count"),
    (
        "enableEnhancedCivicAnswers",
        "enable_enhanced_civic_answers",
    ),
    ("frequencyPenalty", "frequency_penalty"),
    ("imageConfig", "image_config"),
    ("logprobs", "logprobs"),
    ("maxOutputTokens", "max_output_tokens"),
    ("mediaResolution", "media_resolution"),
    ("presencePenalty", "presence_penalty"),
    ("responseJsonSchema", "response_json_schema"),
    ("responseLogprobs", "response_logprobs"),
    ("responseMimeType", "response_mime_type"),
    ("responseModalities", "response_modalities"),
    ("responseSchema", "response_schema"),
    ("seed", "seed"),
    ("speechConfig", "speech_config"),
    ("stopSequences", "stop_sequences"),
    ("temperature", "temperature"),
    ("thinkingConfig", "thinking_config"),
    ("topK", "top_k"),
    ("topP", "top_p"),
];

const THINKING_CONFIG: Fields = &[
    ("includeThoughts", "include_thoughts"),
    ("thinkingBudget", "thinking_budget"),
    ("thinkingLevel", "thinking_level"),
];

const CONTENT: Fields = &[("parts", "parts"), ("role", "role")];

/// The `data` oneof of a `Part`.
const PART_DATA: Fields = &[
    ("codeExecutionResult", "code_execution_result"),
    ("executableCode", "executable_code"),
    ("fileData", "file_data"),
    ("functionCall", "function_call"),
    ("functionResponse", "function_response"),
    ("inlineData", "inline_data"),
    ("text", "text"),
];

const PART: Fields = &[
    ("codeExecutionResult", "code_execution_result"),
    ("executableCode", "executable_code"),
    ("fileData", "file_data"),
    ("functionCall", "function_call"),
    ("functionResponse", "function_response"),
    ("inlineData", "inline_data"),
    ("partMetadata", "part_metadata"),
    ("text", "text"),
    ("thought", "thought"),
    ("thoughtSignature", "thought_signature"),
    ("videoMetadata", "video_metadata"),
];

/// A service tier of reference 3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// `standard` (also `unspecified`, or absent).
    Standard,
    /// `flex`.
    Flex,
    /// `priority`.
    Priority,
}

impl Tier {
    /// The lower-case name reported in `x-gemini-service-tier`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Standard => "standard",
            Tier::Flex => "flex",
            Tier::Priority => "priority",
        }
    }
}

/// The parts of a `GenerateContentRequest` the simulator uses.
#[derive(Debug)]
pub struct GenRequest<'a> {
    contents: &'a [Value],
    system: Option<&'a Value>,
    tools: Option<&'a Value>,
    tool_config: Option<&'a Value>,
    max_output: Option<u64>,
    candidates: u32,
    thinking_budget: u64,
    cached_content: Option<&'a str>,
    /// The requested tier, when the field was sent.
    pub tier: Option<Tier>,
}

/// Validates a `GenerateContentRequest` (`at` prefixes error paths inside batches).
pub fn parse_request<'a>(value: &'a Value, at: &str) -> Result<GenRequest<'a>, GemError> {
    let map = object(value, at, REQUEST)?;
    let contents = match get(map, ("contents", "contents")) {
        None => &[][..],
        Some(v) => array(v, &join(at, "contents"))?,
    };
    for (i, content) in contents.iter().enumerate() {
        check_content(content, &join(at, &format!("contents[{i}]")), true)?;
    }
    let system = get(map, ("systemInstruction", "system_instruction"));
    if let Some(s) = system {
        check_content(s, &join(at, "system_instruction"), false)?;
    }
    let tools = get(map, ("tools", "tools"));
    if let Some(t) = tools {
        array(t, &join(at, "tools"))?;
    }
    let tool_config = get(map, ("toolConfig", "tool_config"));
    if let Some(t) = tool_config.filter(|t| !t.is_object()) {
        return Err(GemError::invalid_value(
            &join(at, "tool_config"),
            "message",
            t,
        ));
    }
    if let Some(s) = get(map, ("safetySettings", "safety_settings")) {
        array(s, &join(at, "safety_settings"))?;
    }
    let cached_content = get(map, ("cachedContent", "cached_content"))
        .map(|v| string(v, &join(at, "cached_content")))
        .transpose()?;
    let tier = tier(
        get(map, ("serviceTier", "service_tier")),
        &join(at, "service_tier"),
    )?;
    let mut req = GenRequest {
        contents,
        system,
        tools,
        tool_config,
        max_output: None,
        candidates: 1,
        thinking_budget: 0,
        cached_content: cached_content.filter(|c| !c.is_empty()),
        tier,
    };
    if let Some(g) = get(map, ("generationConfig", "generation_config")) {
        generation_config(&mut req, g, &join(at, "generation_config"))?;
    }
    if contents.is_empty() {
        return Err(GemError::invalid(format!(
            "* GenerateContentRequest.{}: contents is not specified\n",
            join(at, "contents")
        )));
    }
    Ok(req)
}

fn tier(value: Option<&Value>, at: &str) -> Result<Option<Tier>, GemError> {
    let Some(v) = value else {
        return Ok(None);
    };
    match string(v, at)? {
        "standard" | "unspecified" => Ok(Some(Tier::Standard)),
        "flex" => Ok(Some(Tier::Flex)),
        "priority" => Ok(Some(Tier::Priority)),
        _ => Err(GemError::invalid_value(
            at,
            "type.googleapis.com/google.ai.generativelanguage.v1beta.ServiceTier",
            v,
        )),
    }
}

fn check_content(content: &Value, at: &str, needs_parts: bool) -> Result<(), GemError> {
    let map = object(content, at, CONTENT)?;
    if let Some(role) = get(map, ("role", "role")) {
        let role = string(role, &join(at, "role"))?;
        // The role of `systemInstruction` (the one content without required parts) is ignored.
        if needs_parts && !matches!(role, "" | "user" | "model") {
            return Err(GemError::invalid("Please use a valid role: user, model."));
        }
    }
    let parts = match get(map, ("parts", "parts")) {
        None => &[][..],
        Some(p) => array(p, &join(at, "parts"))?,
    };
    for (i, part) in parts.iter().enumerate() {
        let at = join(at, &format!("parts[{i}]"));
        let map = object(part, &at, PART)?;
        let set: Vec<&str> = PART_DATA
            .iter()
            .filter(|f| get(map, **f).is_some())
            .map(|(camel, _)| *camel)
            .collect();
        match set.as_slice() {
            [] => {
                return Err(GemError::invalid(format!(
                    "* GenerateContentRequest.{at}.data: required oneof field 'data' must have one initialized field\n"
                )));
            }
            [_] => {}
            [_, second, ..] => {
                return Err(GemError::unparsable(
                    format!(
                        "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{second}'"
                    ),
                    Some(&at),
                ));
            }
        }
        if let Some(t) = get(map, ("text", "text")) {
            string(t, &join(&at, "text"))?;
        }
    }
    if needs_parts && parts.is_empty() {
        return Err(GemError::invalid(format!(
            "* GenerateContentRequest.{at}.parts: contents.parts must not be empty.\n"
        )));
    }
    Ok(())
}

fn generation_config(req: &mut GenRequest<'_>, value: &Value, at: &str) -> Result<(), GemError> {
    let map = object(value, at, GENERATION_CONFIG)?;
    if let Some(v) = get(map, ("maxOutputTokens", "max_output_tokens")) {
        let at = join(at, "max_output_tokens");
        match int(v, &at, "TYPE_INT32")? {
            0 => {}
            n if n > 0 => req.max_output = Some(n.unsigned_abs()),
            _ => {
                return Err(GemError::invalid(format!(
                    "* GenerateContentRequest.{at}: max_output_tokens must be positive.\n"
                )));
            }
        }
    }
    if let Some(v) = get(map, ("candidateCount", "candidate_count")) {
        let at = join(at, "candidate_count");
        req.candidates = match int(v, &at, "TYPE_INT32")? {
            0 => 1,
            n @ 1..=8 => u32::try_from(n).unwrap_or(1),
            _ => {
                return Err(GemError::invalid(
                    "Only 1 to 8 candidates are supported (candidate_count).",
                ));
            }
        };
    }
    if let Some(v) = get(map, ("temperature", "temperature")) {
        let at = join(at, "temperature");
        match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => {}
            Some(_) => {
                return Err(GemError::invalid(format!(
                    "* GenerateContentRequest.{at}: temperature must be within [0.0, 2.0].\n"
                )));
            }
            None => return Err(GemError::invalid_value(&at, "TYPE_FLOAT", v)),
        }
    }
    if let Some(v) = get(map, ("stopSequences", "stop_sequences")) {
        let at = join(at, "stop_sequences");
        let stops = array(v, &at)?;
        for s in stops {
            string(s, &at)?;
        }
        if stops.len() > 5 {
            return Err(GemError::invalid(format!(
                "* GenerateContentRequest.{at}: at most 5 stop sequences are allowed.\n"
            )));
        }
    }
    if let Some(v) = get(map, ("thinkingConfig", "thinking_config")) {
        let at = join(at, "thinking_config");
        let thinking = object(v, &at, THINKING_CONFIG)?;
        if let Some(b) = get(thinking, ("thinkingBudget", "thinking_budget")) {
            let budget = int(b, &join(&at, "thinking_budget"), "TYPE_INT32")?;
            req.thinking_budget = u64::try_from(budget).unwrap_or(0);
        }
    }
    Ok(())
}

/// Tokens of one `Content`: every text part, and the canonical JSON of other parts.
fn content_tokens(content: &Value) -> u64 {
    let Some(parts) = content.get("parts").and_then(Value::as_array) else {
        return 0;
    };
    let mut buf = Vec::new();
    parts
        .iter()
        .map(|p| match p.get("text").and_then(Value::as_str) {
            Some(t) => tokens(t),
            None => {
                buf.clear();
                write_canonical(p, &mut buf);
                tokens_of_len(buf.len())
            }
        })
        .sum()
}

fn canonical_tokens(value: Option<&Value>) -> (Vec<u8>, u64) {
    let mut buf = Vec::new();
    if let Some(v) = value {
        write_canonical(v, &mut buf);
    }
    let n = tokens_of_len(buf.len());
    (buf, n)
}

/// The prompt's token count (what a batch enqueues).
pub fn prompt_tokens(req: &GenRequest<'_>) -> u64 {
    let tools = canonical_tokens(req.tools).1 + canonical_tokens(req.tool_config).1;
    tools
        + req.system.map_or(0, content_tokens)
        + req.contents.iter().map(content_tokens).sum::<u64>()
}

/// The text of the last `user` (or role-less) content, else of the last content.
fn last_user_text(contents: &[Value]) -> String {
    let is_user = |c: &&Value| {
        c.get("role")
            .and_then(Value::as_str)
            .is_none_or(|r| r.is_empty() || r == "user")
    };
    let Some(content) = contents
        .iter()
        .rev()
        .find(is_user)
        .or_else(|| contents.last())
    else {
        return String::new();
    };
    content
        .get("parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Whether `model` (`gemini-2.5-flash` or `models/gemini-2.5-flash`) can generate content.
pub fn known_model(model: &str) -> bool {
    let id = model.strip_prefix("models/").unwrap_or(model);
    (id.starts_with("gemini-") || id.starts_with("gemma-")) && !id.contains("embedding")
}

/// 404 for a model the simulator does not serve.
pub fn model_not_found(model: &str, version: &str, method: &str) -> GemError {
    GemError::not_found(format!(
        "models/{model} is not found for API version {version}, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."
    ))
}

/// One generated answer, before it is rendered.
#[derive(Debug)]
pub struct Generated {
    answer: Answer,
    candidates: u32,
    prompt: u64,
    cached: u64,
    thoughts: u64,
    model: String,
    response_id: String,
}

/// Generates the answer of `req` for `model` (the prompt cache is consulted and updated).
pub fn generate(
    sim: &Simulator,
    model: &str,
    req: &GenRequest<'_>,
    seq: u64,
) -> Result<Generated, GemError> {
    if let Some(name) = req.cached_content {
        return Err(GemError::permission_denied(format!(
            "CachedContent not found (or permission denied): {name}"
        )));
    }
    let mut header = canonical_tokens(req.tools);
    let tool_config = canonical_tokens(req.tool_config);
    header.0.extend_from_slice(&tool_config.0);
    header.1 += tool_config.1;
    let mut items: Vec<(&Value, u64)> = Vec::with_capacity(req.contents.len() + 1);
    if let Some(s) = req.system {
        items.push((s, content_tokens(s)));
    }
    items.extend(req.contents.iter().map(|c| (c, content_tokens(c))));
    let prompt = header.1 + items.iter().map(|(_, t)| t).sum::<u64>();
    let config = &sim.config.gemini;
    let v2 = model.starts_with("gemini-1") || model.starts_with("gemini-2");
    let min = if v2 {
        config.cache_min_tokens
    } else {
        config.cache_min_tokens_v3
    };
    let cache_model = format!("gemini-native/{model}");
    let cached = sim.cache.lookup_and_insert(
        &Prompt {
            model: &cache_model,
            header: &header.0,
            header_tokens: header.1,
            items: &items,
        },
        min,
    );
    let answer = Answer::new(ANSWER_PREFIX, &last_user_text(req.contents), req.max_output);
    Ok(Generated {
        answer,
        candidates: req.candidates,
        prompt,
        cached,
        thoughts: req.thinking_budget,
        model: model.to_owned(),
        response_id: format!("sim{}{seq}", sim.tag),
    })
}

fn put(map: &mut Map<String, Value>, key: &str, n: u64) {
    if n > 0 {
        map.insert(key.to_owned(), json!(n));
    }
}

impl Generated {
    fn finish_reason(&self) -> &'static str {
        if self.answer.finish_reason == "length" {
            "MAX_TOKENS"
        } else {
            "STOP"
        }
    }

    /// `usageMetadata` with `words` answer words per candidate so far.
    fn usage(&self, words: u64, tier: Option<Tier>) -> Value {
        let candidates = words * u64::from(self.candidates);
        let mut u = Map::new();
        put(&mut u, "promptTokenCount", self.prompt);
        put(&mut u, "cachedContentTokenCount", self.cached);
        put(&mut u, "candidatesTokenCount", candidates);
        put(&mut u, "thoughtsTokenCount", self.thoughts);
        put(
            &mut u,
            "totalTokenCount",
            self.prompt + candidates + self.thoughts,
        );
        if self.prompt > 0 {
            u.insert(
                "promptTokensDetails".to_owned(),
                json!([{"modality": "TEXT", "tokenCount": self.prompt}]),
            );
        }
        if self.cached > 0 {
            u.insert(
                "cacheTokensDetails".to_owned(),
                json!([{"modality": "TEXT", "tokenCount": self.cached}]),
            );
        }
        if let Some(t) = tier {
            u.insert("serviceTier".to_owned(), json!(t.name()));
        }
        Value::Object(u)
    }

    fn candidates(&self, text: &str, finish: bool) -> Value {
        let list: Vec<Value> = (0..self.candidates)
            .map(|index| {
                let mut c = json!({
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "index": index,
                });
                if finish {
                    c["finishReason"] = json!(self.finish_reason());
                }
                c
            })
            .collect();
        Value::Array(list)
    }

    /// The `GenerateContentResponse`; `tier` adds `usageMetadata.serviceTier`.
    pub fn response(&self, tier: Option<Tier>) -> Value {
        json!({
            "candidates": self.candidates(&self.answer.text, true),
            "usageMetadata": self.usage(self.answer.words, tier),
            "modelVersion": self.model,
            "responseId": self.response_id,
        })
    }

    /// The stream: one chunk per word, running usage totals, `finishReason` on the last.
    pub fn chunks(&self, tier: Option<Tier>) -> Vec<Value> {
        let pieces: Vec<&str> = self.answer.pieces().collect();
        let n = pieces.len();
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                json!({
                    "candidates": self.candidates(piece, i + 1 == n),
                    "usageMetadata": self.usage(i as u64 + 1, tier),
                    "modelVersion": self.model,
                    "responseId": self.response_id,
                })
            })
            .collect()
    }
}
