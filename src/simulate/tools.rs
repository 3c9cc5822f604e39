//! Tool calls and structured outputs of simulated chat completions, and the tool rule
//! shared with `/v1/messages`.
//!
//! A chat answer calls at most one tool, chosen by `tool_choice`:
//!
//! * `"required"`: the first function tool; `{"type":"function","function":{"name"}}`:
//!   that one; `{"type":"allowed_tools","allowed_tools":{"mode","tools"}}`: as `required`
//!   or `auto` over the allowed tools;
//! * `"auto"` (the default when `tools` are given): the first function tool that the last
//!   user text [`mentions`], else a text answer;
//! * `"none"`: a text answer. Custom tools are never called (a named custom choice answers
//!   text).
//!
//! Its `arguments` are the compact JSON of [`schema::instance`] of the tool's `parameters`
//! (`{}` without them). Without a tool call, `response_format` `json_schema` answers the
//! instance of its `schema`, `json_object` answers `{"answer": <the text answer>}`.

use serde_json::Value;

use super::error::ApiError;
use super::schema;

/// Whether `text` mentions the tool `name`: it contains, as a word (case-insensitive),
/// the last word of the name (`weather` of `get_weather`, `get-weather` or
/// `getWeather`; all of `search`), or the whole name.
pub fn mentions(text: &str, name: &str) -> bool {
    let key = last_word(name);
    if key.is_empty() {
        return false;
    }
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| w.eq_ignore_ascii_case(key))
        || (key.len() < name.len() && text.to_lowercase().contains(&name.to_lowercase()))
}

fn last_word(name: &str) -> &str {
    let tail = name
        .rsplit(|c: char| !c.is_alphanumeric())
        .find(|p| !p.is_empty())
        .unwrap_or("");
    // camelCase: from the last capital that follows a lower-case letter or a digit.
    let mut start = 0;
    let mut after_lower = false;
    for (i, c) in tail.char_indices() {
        if c.is_uppercase() && after_lower {
            start = i;
        }
        after_lower = c.is_lowercase() || c.is_ascii_digit();
    }
    &tail[start..]
}

/// Largest piece of streamed JSON (tool arguments, structured content).
const JSON_PIECE: usize = 8;

/// `json` cut into pieces of about [`JSON_PIECE`] bytes (on character boundaries), the
/// way providers stream tool input.
pub fn json_pieces(json: &str) -> Vec<&str> {
    let mut pieces = Vec::with_capacity(json.len() / JSON_PIECE + 1);
    let mut rest = json;
    while !rest.is_empty() {
        let mut end = JSON_PIECE.min(rest.len());
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// What a chat answer carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output<'a> {
    /// The usual text answer.
    Text,
    /// `response_format: json_object`: the text answer wrapped in an object.
    JsonObject,
    /// `response_format: json_schema`: the schema's instance (compact JSON).
    Json(String),
    /// A function tool call.
    Call {
        /// `function.name`.
        name: &'a str,
        /// `function.arguments` (compact JSON).
        arguments: String,
    },
}

/// Validates `tools`, `tool_choice` and `response_format` and decides the output.
pub fn plan<'a>(
    tools: Option<&'a Value>,
    choice: Option<&Value>,
    format: Option<&Value>,
    last_user: &str,
) -> Result<Output<'a>, ApiError> {
    let tools = parse_tools(tools)?;
    let format = parse_format(format)?;
    if let Some(tool) = pick(&tools, choice, last_user)? {
        let arguments = tool
            .parameters
            .map_or_else(|| "{}".to_owned(), |p| schema::instance(p).to_string());
        return Ok(Output::Call {
            name: tool.name,
            arguments,
        });
    }
    Ok(match format {
        Format::Text => Output::Text,
        Format::JsonObject => Output::JsonObject,
        Format::Schema(s) => Output::Json(schema::instance(s).to_string()),
    })
}

#[derive(Debug, Clone, Copy)]
struct Tool<'a> {
    name: &'a str,
    parameters: Option<&'a Value>,
    /// A function tool (else custom).
    function: bool,
}

/// `a string`, `an object`… as OpenAI words type errors.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a decimal",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(param: String, expected: &str, got: &Value) -> ApiError {
    ApiError::invalid_at(
        format!(
            "Invalid type for '{param}': expected {expected}, but got {} instead.",
            kind(got)
        ),
        param,
        Some("invalid_type"),
    )
}

fn unsupported(param: String, got: &str, supported: &str) -> ApiError {
    ApiError::invalid_at(
        format!("Invalid value: '{got}'. Supported values are: {supported}."),
        param,
        Some("invalid_value"),
    )
}

/// `obj[key]` as an object (`None` when absent or null).
fn object<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    param: &str,
) -> Result<Option<&'a serde_json::Map<String, Value>>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(v) => Err(wrong_type(format!("{param}.{key}"), "an object", v)),
    }
}

/// `obj[key]` as a required string.
fn string<'a>(
    obj: &'a serde_json::Map<String, Value>,
    key: &str,
    param: &str,
) -> Result<&'a str, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(ApiError::missing(format!("{param}.{key}"))),
        Some(Value::String(s)) => Ok(s),
        Some(v) => Err(wrong_type(format!("{param}.{key}"), "a string", v)),
    }
}

/// A function or response-format name: `^[a-zA-Z0-9_-]+$`, at most 64 characters.
fn check_name(name: &str, param: String) -> Result<(), ApiError> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::invalid_at(
            format!(
                "Invalid '{param}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            ),
            param,
            Some("invalid_value"),
        ));
    }
    if name.len() > 64 {
        return Err(ApiError::invalid_at(
            format!(
                "Invalid '{param}': string too long. Expected a string with maximum length 64, but got a string with length {} instead.",
                name.len()
            ),
            param,
            Some("string_above_max_length"),
        ));
    }
    Ok(())
}

fn parse_tools(tools: Option<&Value>) -> Result<Vec<Tool<'_>>, ApiError> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(v) => return Err(wrong_type("tools".into(), "an array", v)),
    };
    if list.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'tools': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("tools"),
            Some("empty_array"),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, t)| parse_tool(&format!("tools[{i}]"), t))
        .collect()
}

fn parse_tool<'a>(at: &str, tool: &'a Value) -> Result<Tool<'a>, ApiError> {
    let Some(obj) = tool.as_object() else {
        return Err(wrong_type(at.to_owned(), "an object", tool));
    };
    let (key, function) = match string(obj, "type", at)? {
        "function" => ("function", true),
        "custom" => ("custom", false),
        other => {
            return Err(unsupported(
                format!("{at}.type"),
                other,
                "'function' and 'custom'",
            ));
        }
    };
    let body = object(obj, key, at)?.ok_or_else(|| ApiError::missing(format!("{at}.{key}")))?;
    let at = format!("{at}.{key}");
    let name = string(body, "name", &at)?;
    check_name(name, format!("{at}.name"))?;
    let parameters = match body.get("parameters").filter(|_| function) {
        None | Some(Value::Null) => None,
        Some(p @ Value::Object(_)) => Some(p),
        Some(v) => return Err(wrong_type(format!("{at}.parameters"), "an object", v)),
    };
    Ok(Tool {
        name,
        parameters,
        function,
    })
}

/// The first function tool, among `candidates`, that qualifies.
fn first<'a, 't>(
    candidates: impl Iterator<Item = &'t Tool<'a>>,
    qualifies: impl Fn(&Tool<'a>) -> bool,
) -> Option<Tool<'a>>
where
    'a: 't,
{
    candidates
        .filter(|t| t.function)
        .find(|t| qualifies(t))
        .copied()
}

/// The tool the answer calls, if any.
fn pick<'a>(
    tools: &[Tool<'a>],
    choice: Option<&Value>,
    last_user: &str,
) -> Result<Option<Tool<'a>>, ApiError> {
    let auto = |candidates: &[Tool<'a>]| first(candidates.iter(), |t| mentions(last_user, t.name));
    let needs_tools = || {
        if tools.is_empty() {
            Err(ApiError::invalid(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
                Some("tool_choice"),
                None,
            ))
        } else {
            Ok(())
        }
    };
    let obj = match choice {
        None | Some(Value::Null) => return Ok(auto(tools)),
        Some(Value::String(mode)) => {
            return match mode.as_str() {
                "none" => Ok(None),
                "auto" => Ok(auto(tools)),
                "required" => needs_tools().map(|()| first(tools.iter(), |_| true)),
                other => Err(unsupported(
                    "tool_choice".into(),
                    other,
                    "'none', 'auto', and 'required'",
                )),
            };
        }
        Some(Value::Object(obj)) => obj,
        Some(v) => {
            return Err(wrong_type(
                "tool_choice".into(),
                "one of a string or an object",
                v,
            ));
        }
    };
    let find = |name: &str, function: bool, param: String| {
        tools
            .iter()
            .find(|t| t.function == function && t.name == name)
            .copied()
            .ok_or_else(|| {
                let kind = if function { "function" } else { "custom tool" };
                ApiError::invalid_at(
                    format!("Invalid '{param}': no {kind} named '{name}' in 'tools'."),
                    param,
                    Some("invalid_value"),
                )
            })
    };
    match string(obj, "type", "tool_choice")? {
        kind @ ("function" | "custom") => {
            let body = object(obj, kind, "tool_choice")?
                .ok_or_else(|| ApiError::missing(format!("tool_choice.{kind}")))?;
            let at = format!("tool_choice.{kind}");
            let name = string(body, "name", &at)?;
            needs_tools()?;
            let tool = find(name, kind == "function", format!("{at}.name"))?;
            Ok(tool.function.then_some(tool))
        }
        "allowed_tools" => {
            let at = "tool_choice.allowed_tools";
            let body = object(obj, "allowed_tools", "tool_choice")?
                .ok_or_else(|| ApiError::missing(at))?;
            let required = match string(body, "mode", at)? {
                "auto" => false,
                "required" => true,
                other => {
                    return Err(unsupported(
                        format!("{at}.mode"),
                        other,
                        "'auto' and 'required'",
                    ));
                }
            };
            let list = match body.get("tools") {
                None | Some(Value::Null) => return Err(ApiError::missing(format!("{at}.tools"))),
                Some(Value::Array(list)) => list,
                Some(v) => return Err(wrong_type(format!("{at}.tools"), "an array", v)),
            };
            needs_tools()?;
            let mut allowed = Vec::with_capacity(list.len());
            for (j, entry) in list.iter().enumerate() {
                let entry_at = format!("{at}.tools[{j}]");
                let Some(e) = entry.as_object() else {
                    return Err(wrong_type(entry_at, "an object", entry));
                };
                let kind = string(e, "type", &entry_at)?;
                let function = kind == "function";
                let body = object(e, kind, &entry_at)?
                    .ok_or_else(|| ApiError::missing(format!("{entry_at}.{kind}")))?;
                let name = string(body, "name", &format!("{entry_at}.{kind}"))?;
                allowed.push(find(name, function, format!("{entry_at}.{kind}.name"))?);
            }
            Ok(if required {
                first(allowed.iter(), |_| true)
            } else {
                auto(&allowed)
            })
        }
        other => Err(unsupported(
            "tool_choice.type".into(),
            other,
            "'function', 'allowed_tools', and 'custom'",
        )),
    }
}

enum Format<'a> {
    Text,
    JsonObject,
    Schema(&'a Value),
}

fn parse_format(format: Option<&Value>) -> Result<Format<'_>, ApiError> {
    let obj = match format {
        None | Some(Value::Null) => return Ok(Format::Text),
        Some(Value::Object(obj)) => obj,
        Some(v) => return Err(wrong_type("response_format".into(), "an object", v)),
    };
    match string(obj, "type", "response_format")? {
        "text" => Ok(Format::Text),
        "json_object" => Ok(Format::JsonObject),
        "json_schema" => {
            let at = "response_format.json_schema";
            let js = object(obj, "json_schema", "response_format")?
                .ok_or_else(|| ApiError::missing(at))?;
            check_name(string(js, "name", at)?, format!("{at}.name"))?;
            match js.get("schema") {
                None | Some(Value::Null) => Ok(Format::Schema(&Value::Null)),
                Some(s @ (Value::Object(_) | Value::Bool(_))) => Ok(Format::Schema(s)),
                Some(v) => Err(wrong_type(format!("{at}.schema"), "an object", v)),
            }
        }
        other => Err(unsupported(
            "response_format.type".into(),
            other,
            "'text', 'json_object', and 'json_schema'",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mentions_the_last_word_or_the_whole_name() {
        assert!(mentions("What's the Weather in Paris?", "get_weather"));
        assert!(mentions("weather?", "get-weather"));
        assert!(mentions("the weather", "getWeather"));
        assert!(mentions("please call getWeather", "getWeather"));
        assert!(mentions("search the docs", "search"));
        assert!(!mentions("weatherproof boots", "get_weather"));
        assert!(!mentions("get me a coffee", "get_weather"));
        assert!(!mentions("anything", "___"));
        assert_eq!(last_word("lookupOrder2"), "Order2");
    }

    #[test]
    fn json_pieces_concatenate() {
        let raw = r#"{"city":"Paris","note":"é€"}"#;
        let pieces = json_pieces(raw);
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), raw);
        assert!(json_pieces("").is_empty());
    }

    #[test]
    fn plans() {
        let tools = json!([
            {"type": "custom", "custom": {"name": "grammar"}},
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
            {"type": "function", "function": {"name": "get_time", "parameters": null}}
        ]);
        let call = |choice: Value, text: &str| plan(Some(&tools), Some(&choice), None, text);
        let weather = Output::Call {
            name: "get_weather",
            arguments: r#"{"city":"simulated"}"#.into(),
        };
        assert_eq!(call(json!("required"), "hi"), Ok(weather.clone()));
        assert_eq!(call(Value::Null, "the weather?"), Ok(weather.clone()));
        assert_eq!(call(json!("auto"), "hi"), Ok(Output::Text));
        assert_eq!(call(json!("none"), "the weather?"), Ok(Output::Text));
        let time = Output::Call {
            name: "get_time",
            arguments: "{}".into(),
        };
        assert_eq!(call(json!("auto"), "what time is it"), Ok(time.clone()));
        let named = json!({"type": "function", "function": {"name": "get_time"}});
        assert_eq!(call(named, "the weather?"), Ok(time.clone()));
        let allowed = json!({"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]}});
        assert_eq!(call(allowed, "the weather?"), Ok(time));
        let custom = json!({"type": "custom", "custom": {"name": "grammar"}});
        assert_eq!(call(custom, "the weather?"), Ok(Output::Text));

        let format = json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}});
        assert_eq!(
            plan(None, None, Some(&format), "x"),
            Ok(Output::Json(r#"{"n":1}"#.into()))
        );
        let no_schema = json!({"type": "json_schema", "json_schema": {"name": "x"}});
        assert_eq!(
            plan(None, None, Some(&no_schema), "x"),
            Ok(Output::Json("{}".into()))
        );
        let object = json!({"type": "json_object"});
        assert_eq!(plan(None, None, Some(&object), "x"), Ok(Output::JsonObject));
    }

    #[test]
    fn bad_input_is_an_openai_400() {
        let err = |tools: Value, choice: Value, format: Value| {
            let e = plan(Some(&tools), Some(&choice), Some(&format), "x").unwrap_err();
            assert_eq!(e.status, 400);
            (e.param.unwrap_or_default().into_owned(), e.code)
        };
        let ok = json!([{"type": "function", "function": {"name": "f"}}]);
        let cases = [
            (
                json!({}),
                json!(null),
                json!(null),
                "tools",
                Some("invalid_type"),
            ),
            (
                json!([]),
                json!(null),
                json!(null),
                "tools",
                Some("empty_array"),
            ),
            (
                json!([7]),
                json!(null),
                json!(null),
                "tools[0]",
                Some("invalid_type"),
            ),
            (
                json!([{"function": {"name": "f"}}]),
                json!(null),
                json!(null),
                "tools[0].type",
                Some("missing_required_parameter"),
            ),
            (
                json!([{"type": "web"}]),
                json!(null),
                json!(null),
                "tools[0].type",
                Some("invalid_value"),
            ),
            (
                json!([{"type": "function"}]),
                json!(null),
                json!(null),
                "tools[0].function",
                Some("missing_required_parameter"),
            ),
            (
                json!([{"type": "function", "function": {}}]),
                json!(null),
                json!(null),
                "tools[0].function.name",
                Some("missing_required_parameter"),
            ),
            (
                json!([{"type": "function", "function": {"name": "a b"}}]),
                json!(null),
                json!(null),
                "tools[0].function.name",
                Some("invalid_value"),
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
                json!(null),
                json!(null),
                "tools[0].function.parameters",
                Some("invalid_type"),
            ),
            (
                ok.clone(),
                json!("always"),
                json!(null),
                "tool_choice",
                Some("invalid_value"),
            ),
            (
                ok.clone(),
                json!(3),
                json!(null),
                "tool_choice",
                Some("invalid_type"),
            ),
            (
                ok.clone(),
                json!({"type": "function", "function": {"name": "g"}}),
                json!(null),
                "tool_choice.function.name",
                Some("invalid_value"),
            ),
            (
                ok.clone(),
                json!({"type": "function"}),
                json!(null),
                "tool_choice.function",
                Some("missing_required_parameter"),
            ),
            (
                ok.clone(),
                json!({"type": "allowed_tools", "allowed_tools": {"mode": "any", "tools": []}}),
                json!(null),
                "tool_choice.allowed_tools.mode",
                Some("invalid_value"),
            ),
            (
                ok.clone(),
                json!(null),
                json!("json"),
                "response_format",
                Some("invalid_type"),
            ),
            (
                ok.clone(),
                json!(null),
                json!({"type": "xml"}),
                "response_format.type",
                Some("invalid_value"),
            ),
            (
                ok.clone(),
                json!(null),
                json!({"type": "json_schema"}),
                "response_format.json_schema",
                Some("missing_required_parameter"),
            ),
            (
                ok.clone(),
                json!(null),
                json!({"type": "json_schema", "json_schema": {"schema": {}}}),
                "response_format.json_schema.name",
                Some("missing_required_parameter"),
            ),
            (
                ok,
                json!(null),
                json!({"type": "json_schema", "json_schema": {"name": "x", "schema": 1}}),
                "response_format.json_schema.schema",
                Some("invalid_type"),
            ),
        ];
        for (tools, choice, format, param, code) in cases {
            assert_eq!(err(tools, choice, format), (param.to_owned(), code));
        }
        let e = plan(None, Some(&json!("required")), None, "x").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
        // Without tools, `auto` and `none` are accepted.
        assert_eq!(
            plan(None, Some(&json!("none")), None, "x"),
            Ok(Output::Text)
        );
    }
}
