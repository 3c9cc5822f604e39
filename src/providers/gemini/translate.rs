//! OpenAI chat completions <-> Gemini `generateContent` (provider-apis.md 3.1), for Batch
//! Mode: the interactive path uses Google's OpenAI-compatible endpoint and needs none of
//! this. Pure: bytes in, bytes out, no I/O, no clock.
//!
//! Request (OpenAI → `GenerateContentRequest`): `system` / `developer` messages →
//! `systemInstruction` (text only); `user` → role `user`, `assistant` → role `model`
//! (consecutive turns of one role merged); text parts → `text`; `image_url` data URLs and
//! `input_audio` → `inlineData`; assistant `tool_calls` → `functionCall`, `tool` messages →
//! `functionResponse` (named after the call they answer); `tools` → `functionDeclarations`
//! with `parametersJsonSchema`; `tool_choice` → `toolConfig.functionCallingConfig`;
//! sampling fields, `n`, `seed`, `stop` and `response_format` → `generationConfig`. `model`,
//! `stream`, `stream_options` and hints that do not change the answer are dropped. A field
//! set to `null` or its OpenAI default counts as absent; anything else that cannot be
//! honoured is refused with a message naming it, so the gateway can send such a request
//! interactively instead ([`crate::providers::batchable`]).
//!
//! Response (`GenerateContentResponse` → `chat.completion`), both ProtoJSON spellings read:
//! candidates → choices, `functionCall` parts → `tool_calls`, `finishReason` mapped, usage
//! from `usageMetadata` (`prompt_tokens` = `promptTokenCount`, which includes cached tokens;
//! `completion_tokens` = candidates + thoughts).

use bytes::Bytes;
use serde_json::{Map, Value, json};

/// Hints with no effect on the answer (or on what Gemini can do), dropped.
const IGNORED: &[&str] = &[
    "model",
    "stream",
    "stream_options",
    "user",
    "safety_identifier",
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
];

/// An OpenAI chat completions request body as a Gemini `GenerateContentRequest`.
pub fn request_from_openai(body: &[u8]) -> Result<Vec<u8>, String> {
    let req: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| format!("unreadable request: {e}"))?;
    let mut out = Map::new();
    let mut config = Map::new();
    for (key, value) in &req {
        if value.is_null() || IGNORED.contains(&key.as_str()) {
            continue;
        }
        match key.as_str() {
            "messages" => messages(value, &mut out)?,
            "temperature" => config_number(&mut config, "temperature", key, value)?,
            "top_p" => config_number(&mut config, "topP", key, value)?,
            "presence_penalty" => config_number(&mut config, "presencePenalty", key, value)?,
            "frequency_penalty" => config_number(&mut config, "frequencyPenalty", key, value)?,
            "seed" => config_number(&mut config, "seed", key, value)?,
            // `max_completion_tokens` wins when both are set.
            "max_tokens" if req.get("max_completion_tokens").is_none_or(Value::is_null) => {
                config_number(&mut config, "maxOutputTokens", key, value)?
            }
            "max_tokens" => {}
            "max_completion_tokens" => config_number(&mut config, "maxOutputTokens", key, value)?,
            "n" => match value.as_u64() {
                Some(1) => {}
                Some(n @ 2..=8) => {
                    config.insert("candidateCount".into(), json!(n));
                }
                _ => return Err(refused(key, "must be 1 to 8 for Gemini")),
            },
            "stop" => {
                let stops = match value {
                    Value::String(s) => vec![json!(s)],
                    Value::Array(a) if a.iter().all(Value::is_string) => a.clone(),
                    _ => return Err(refused(key, "must be a string or an array of strings")),
                };
                if stops.len() > 5 {
                    return Err(refused(key, "Gemini takes at most 5 stop sequences"));
                }
                if !stops.is_empty() {
                    config.insert("stopSequences".into(), Value::Array(stops));
                }
            }
            "response_format" => response_format(value, &mut config)?,
            "tools" => tools(value, &mut out)?,
            "tool_choice" => tool_choice(value, &mut out)?,
            "parallel_tool_calls" if value == &json!(true) => {}
            "logprobs" | "store" if value == &json!(false) => {}
            "service_tier" if matches!(value.as_str(), Some("auto" | "default")) => {}
            "reasoning_effort" if value.as_str() == Some("none") => {}
            _ => return Err(refused(key, "has no Gemini Batch Mode equivalent")),
        }
    }
    if !out.contains_key("contents") {
        return Err(refused("messages", "has no user or assistant content"));
    }
    // Tools without a tool_choice stay AUTO, Gemini's default; a tool_choice without tools
    // other than auto/none means nothing to call.
    if out.contains_key("toolConfig") && !out.contains_key("tools") {
        let mode = &out["toolConfig"]["functionCallingConfig"]["mode"];
        if mode == "ANY" {
            return Err(refused(
                "tool_choice",
                "names a tool but no tools are given",
            ));
        }
        out.remove("toolConfig");
    }
    if !config.is_empty() {
        out.insert("generationConfig".into(), Value::Object(config));
    }
    serde_json::to_vec(&out).map_err(|e| e.to_string())
}

fn refused(param: &str, why: &str) -> String {
    format!("{param}: {why}")
}

fn config_number(
    config: &mut Map<String, Value>,
    name: &str,
    param: &str,
    value: &Value,
) -> Result<(), String> {
    if !value.is_number() {
        return Err(refused(param, "must be a number"));
    }
    config.insert(name.into(), value.clone());
    Ok(())
}

fn response_format(value: &Value, config: &mut Map<String, Value>) -> Result<(), String> {
    match value.get("type").and_then(Value::as_str) {
        Some("text") => {}
        Some("json_object") => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some("json_schema") => {
            let schema = value
                .pointer("/json_schema/schema")
                .filter(|s| s.is_object())
                .ok_or_else(|| refused("response_format.json_schema.schema", "is required"))?;
            config.insert("responseMimeType".into(), json!("application/json"));
            // JSON Schema as such (`responseSchema` is Google's OpenAPI subset).
            config.insert("responseJsonSchema".into(), schema.clone());
        }
        _ => {
            return Err(refused(
                "response_format",
                "must be text, json_object or json_schema",
            ));
        }
    }
    Ok(())
}

fn tools(value: &Value, out: &mut Map<String, Value>) -> Result<(), String> {
    let Some(list) = value.as_array() else {
        return Err(refused("tools", "must be an array"));
    };
    let mut decls = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(refused(&at, "only function tools can be translated"));
        }
        let f = t
            .get("function")
            .ok_or_else(|| refused(&at, "has no function"))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| refused(&format!("{at}.function.name"), "is required"))?;
        let mut d = json!({ "name": name });
        if let Some(desc) = f.get("description").and_then(Value::as_str) {
            d["description"] = json!(desc);
        }
        if let Some(p) = f.get("parameters").filter(|p| !p.is_null()) {
            d["parametersJsonSchema"] = p.clone();
        }
        decls.push(d);
    }
    if !decls.is_empty() {
        out.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
    }
    Ok(())
}

fn tool_choice(value: &Value, out: &mut Map<String, Value>) -> Result<(), String> {
    let config = match (value.as_str(), value.get("type").and_then(Value::as_str)) {
        (Some("auto"), _) => json!({"mode": "AUTO"}),
        (Some("none"), _) => json!({"mode": "NONE"}),
        (Some("required"), _) => json!({"mode": "ANY"}),
        (None, Some("function")) => {
            let name = value
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| refused("tool_choice.function.name", "is required"))?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        _ => return Err(refused("tool_choice", "cannot be translated")),
    };
    out.insert(
        "toolConfig".into(),
        json!({ "functionCallingConfig": config }),
    );
    Ok(())
}

fn messages(value: &Value, out: &mut Map<String, Value>) -> Result<(), String> {
    let Some(list) = value.as_array() else {
        return Err(refused("messages", "must be an array"));
    };
    let mut system: Vec<Value> = Vec::new();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    // Tool results name the function they answer; OpenAI names only the call id.
    let mut call_names: std::collections::HashMap<String, String> = Default::default();
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let content = m.get("content").filter(|c| !c.is_null());
        let (role, parts) = match role {
            "system" | "developer" => {
                system.extend(text_parts(content, &at)?);
                continue;
            }
            "user" => ("user", user_parts(content, &at)?),
            "assistant" => {
                let mut parts = text_parts(content, &at)?;
                if let Some(calls) = m.get("tool_calls").filter(|c| !c.is_null()) {
                    parts.extend(function_calls(calls, &at, &mut call_names)?);
                }
                if m.get("function_call").is_some_and(|v| !v.is_null())
                    || m.get("audio").is_some_and(|v| !v.is_null())
                {
                    return Err(refused(&at, "function_call and audio cannot be translated"));
                }
                ("model", parts)
            }
            "tool" => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = call_names.get(id).ok_or_else(|| {
                    refused(
                        &format!("{at}.tool_call_id"),
                        "answers no earlier tool call",
                    )
                })?;
                let text = text_parts(content, &at)?
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<String>();
                // `response` must be an object: a JSON object result is passed as such,
                // anything else wrapped (UNCONFIRMED which key Gemini prefers).
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "result": text }),
                };
                (
                    "user",
                    vec![json!({"functionResponse": {"name": name, "response": response}})],
                )
            }
            other => {
                return Err(refused(
                    &format!("{at}.role"),
                    &format!("{other:?} cannot be translated"),
                ));
            }
        };
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((r, p)) if *r == role => p.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    if !system.is_empty() {
        out.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    if !contents.is_empty() {
        let contents: Vec<Value> = contents
            .into_iter()
            .map(|(role, parts)| json!({"role": role, "parts": parts}))
            .collect();
        out.insert("contents".into(), Value::Array(contents));
    }
    Ok(())
}

/// A string or text (and refusal) parts as Gemini text parts; empty texts dropped.
fn text_parts(content: Option<&Value>, at: &str) -> Result<Vec<Value>, String> {
    let text = |s: &str| (!s.is_empty()).then(|| json!({ "text": s }));
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text(s).into_iter().collect()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => out.extend(p["text"].as_str().and_then(text)),
                    Some("refusal") => out.extend(p["refusal"].as_str().and_then(text)),
                    _ => {
                        return Err(refused(
                            &format!("{at}.content[{j}]"),
                            "only text parts are allowed here",
                        ));
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(refused(
            &format!("{at}.content"),
            "must be a string or parts",
        )),
    }
}

fn user_parts(content: Option<&Value>, at: &str) -> Result<Vec<Value>, String> {
    let Some(Value::Array(parts)) = content else {
        return text_parts(content, at);
    };
    let mut out = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        let here = format!("{at}.content[{j}]");
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(s) = p["text"].as_str().filter(|s| !s.is_empty()) {
                    out.push(json!({ "text": s }));
                }
            }
            Some("image_url") => {
                let url = p
                    .pointer("/image_url/url")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let (mime, data) = data_url(url).ok_or_else(|| {
                    refused(&here, "only base64 data: image URLs can be translated")
                })?;
                out.push(json!({"inlineData": {"mimeType": mime, "data": data}}));
            }
            Some("input_audio") => {
                let data = p.pointer("/input_audio/data").and_then(Value::as_str);
                let format = p.pointer("/input_audio/format").and_then(Value::as_str);
                let (Some(data), Some(format @ ("wav" | "mp3"))) = (data, format) else {
                    return Err(refused(
                        &here,
                        "input_audio needs data and a wav or mp3 format",
                    ));
                };
                out.push(
                    json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}}),
                );
            }
            _ => return Err(refused(&here, "cannot be translated")),
        }
    }
    Ok(out)
}

/// `data:<mime>;base64,<data>` → (mime, data).
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    (!mime.is_empty() && !data.is_empty()).then_some((mime, data))
}

fn function_calls(
    calls: &Value,
    at: &str,
    names: &mut std::collections::HashMap<String, String>,
) -> Result<Vec<Value>, String> {
    let Some(list) = calls.as_array() else {
        return Err(refused(&format!("{at}.tool_calls"), "must be an array"));
    };
    let mut out = Vec::new();
    for (k, c) in list.iter().enumerate() {
        let here = format!("{at}.tool_calls[{k}]");
        if c.get("type").and_then(Value::as_str) != Some("function") {
            return Err(refused(&here, "only function calls can be translated"));
        }
        let name = c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or_else(|| refused(&here, "has no function name"))?;
        let raw = c
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("{}");
        let args: Value = match raw.trim() {
            "" => json!({}),
            s => serde_json::from_str(s)
                .map_err(|_| refused(&format!("{here}.function.arguments"), "is not JSON"))?,
        };
        if let Some(id) = c.get("id").and_then(Value::as_str) {
            names.insert(id.to_owned(), name.to_owned());
        }
        out.push(json!({"functionCall": {"name": name, "args": args}}));
    }
    Ok(out)
}

/// A field under its camelCase or snake_case name (ProtoJSON accepts both).
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel)
        .or_else(|| v.get(snake))
        .filter(|x| !x.is_null())
}

fn count(v: Option<&Value>, camel: &str, snake: &str) -> u64 {
    // int32 counts are numbers, but ProtoJSON also accepts them as strings.
    v.and_then(|u| field(u, camel, snake))
        .and_then(|c| c.as_u64().or_else(|| c.as_str()?.parse().ok()))
        .unwrap_or(0)
}

/// A Gemini `GenerateContentResponse` as an OpenAI `chat.completion` for `model`.
pub fn response_to_openai(body: &[u8], model: &str, created: i64) -> Result<Bytes, String> {
    let r: Value =
        serde_json::from_slice(body).map_err(|e| format!("unreadable Gemini answer: {e}"))?;
    if !r.is_object() {
        return Err("a Gemini answer must be a JSON object".into());
    }
    let mut choices = Vec::new();
    if let Some(cands) = field(&r, "candidates", "candidates").and_then(Value::as_array) {
        for (i, c) in cands.iter().enumerate() {
            choices.push(choice(c, i));
        }
    }
    if choices.is_empty() {
        // A blocked prompt has no candidates (`promptFeedback.blockReason`).
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": null, "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    let u = field(&r, "usageMetadata", "usage_metadata");
    let prompt = count(u, "promptTokenCount", "prompt_token_count");
    let cached = count(u, "cachedContentTokenCount", "cached_content_token_count");
    let thoughts = count(u, "thoughtsTokenCount", "thoughts_token_count");
    let completion = count(u, "candidatesTokenCount", "candidates_token_count") + thoughts;
    let id = field(&r, "responseId", "response_id")
        .and_then(Value::as_str)
        .map_or_else(
            || format!("chatcmpl-{:016x}", fnv(body)),
            |s| format!("chatcmpl-{s}"),
        );
    let out = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": thoughts},
        },
        "system_fingerprint": null,
    });
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

fn choice(c: &Value, position: usize) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    let parts = field(c, "content", "content")
        .and_then(|ct| field(ct, "parts", "parts"))
        .and_then(Value::as_array);
    for p in parts.into_iter().flatten() {
        if p.get("thought").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
        if let Some(f) = field(p, "functionCall", "function_call") {
            let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
            let args = f.get("args").filter(|a| !a.is_null()).cloned();
            let id = f
                .get("id")
                .and_then(Value::as_str)
                .map_or_else(|| format!("call_{position}_{}", calls.len()), str::to_owned);
            calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": args.unwrap_or_else(|| json!({})).to_string()},
            }));
        }
    }
    let reason = field(c, "finishReason", "finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("STOP");
    let finish = match reason {
        _ if !calls.is_empty() && matches!(reason, "STOP" | "FINISH_REASON_UNSPECIFIED") => {
            "tool_calls"
        }
        "MAX_TOKENS" => "length",
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT"
        | "IMAGE_RECITATION" => "content_filter",
        _ => "stop",
    };
    // Only tool calls: `content` is null, as OpenAI sends it.
    let content = if text.is_empty() && !calls.is_empty() {
        Value::Null
    } else {
        json!(text)
    };
    let mut message = json!({
        "role": "assistant",
        "content": content,
        "refusal": null,
        "annotations": [],
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let index = c
        .get("index")
        .and_then(Value::as_u64)
        .unwrap_or(position as u64);
    json!({"index": index, "message": message, "logprobs": null, "finish_reason": finish})
}

/// A stable id for an answer without `responseId`.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A Google error envelope `{"error":{code,message,status}}` (or the one-element array the
/// OpenAI-compatible layer wraps it in) as an OpenAI error body.
pub fn error_to_openai(body: &[u8]) -> Bytes {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let v = v.get(0).cloned().unwrap_or(v);
    let err = v.get("error");
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map_or_else(|| String::from_utf8_lossy(body).into_owned(), str::to_owned);
    let status = err
        .and_then(|e| e.get("status"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (kind, code) = match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            ("invalid_request_error", Value::Null)
        }
        "UNAUTHENTICATED" => ("invalid_request_error", json!("invalid_api_key")),
        "PERMISSION_DENIED" => ("invalid_request_error", json!("permission_denied")),
        "NOT_FOUND" => ("invalid_request_error", json!("not_found")),
        "ALREADY_EXISTS" | "ABORTED" => ("invalid_request_error", json!("conflict")),
        "RESOURCE_EXHAUSTED" => ("requests", json!("rate_limit_exceeded")),
        "DEADLINE_EXCEEDED" => ("server_error", json!("timeout")),
        "UNAVAILABLE" => ("server_error", json!("overloaded")),
        _ => ("server_error", Value::Null),
    };
    Bytes::from(
        json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
            .to_string(),
    )
}
