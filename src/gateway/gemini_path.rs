//! The Gemini-native routes, read from the URL alone: `POST /v1beta/models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse` (also below `/v1/`, the `google-genai` SDK's other
//! version). Gemini bodies name neither the model nor streaming, so both come from here,
//! as does a gateway key sent as `?key=` (the docs' REST samples do).

use crate::error::GatewayError;
use crate::inspect::MAX_MODEL_BYTES;

/// A Gemini-native request, as its URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// The model id, without `models/`.
    pub model: String,
    /// `:streamGenerateContent`.
    pub stream: bool,
    /// The `key` query parameter: a gateway key, never forwarded (the upstream URL is
    /// Sluice's own) nor logged (errors name the path, not the query).
    pub query_key: Option<String>,
}

/// The verbs Sluice serves.
const GENERATE: &str = "generateContent";
const STREAM: &str = "streamGenerateContent";
/// Other Gemini model methods: claimed below `/v1/models/` so they get Google's 404, not
/// OpenAI's `GET /v1/models/{id}` (whose fine-tuned ids contain `:` too).
const OTHER_VERBS: [&str; 6] = [
    "countTokens",
    "embedContent",
    "batchEmbedContents",
    "batchGenerateContent",
    "predict",
    "predictLongRunning",
];

/// `None` when the path is not Gemini-native (everything below `/v1beta/` is, and
/// `/v1/models/{model}:{verb}` for a Gemini verb). Else the target, or the error to answer
/// in Google's shape: 404 for a path Sluice does not serve, 400 for an unusable model.
pub(super) fn parse(
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Option<Result<Target, GatewayError>> {
    let not_found = || GatewayError::NotFound {
        method: method.to_owned(),
        path: path.to_owned(),
    };
    let (beta, rest) = match (path.strip_prefix("/v1beta/"), path.strip_prefix("/v1/")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) if path == "/v1beta" => return Some(Err(not_found())),
        (None, None) => return None,
    };
    let Some(decoded) = percent_decode(rest) else {
        // Below `/v1/` an undecodable path is not ours to judge.
        return beta.then(|| {
            Err(GatewayError::invalid(
                "the URL path is not valid percent-encoded UTF-8",
                None,
            ))
        });
    };
    let named = decoded
        .strip_prefix("models/")
        .and_then(|r| r.rsplit_once(':'));
    let Some((model, verb)) = named else {
        return beta.then(|| Err(not_found()));
    };
    let stream = match verb {
        GENERATE => false,
        STREAM => true,
        v if beta || OTHER_VERBS.contains(&v) => return Some(Err(not_found())),
        _ => return None,
    };
    Some(target(model, stream, query))
}

fn target(model: &str, stream: bool, query: Option<&str>) -> Result<Target, GatewayError> {
    let invalid_model = |message: String| GatewayError::InvalidRequest {
        message,
        param: Some("model"),
        code: "invalid_model",
    };
    if model.is_empty() {
        return Err(invalid_model(
            "the model is missing from the URL: expected /v1beta/models/{model}:generateContent"
                .into(),
        ));
    }
    // A model id is a short name; anything else (a `/`, a space, a second `models/`) would
    // change the upstream URL it is spliced into.
    if model.len() > MAX_MODEL_BYTES
        || !model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(invalid_model(format!(
            "invalid model {model:?} in the URL: expected an id such as gemini-2.5-flash (letters, digits, '-', '.', '_'; at most {MAX_MODEL_BYTES} bytes)"
        )));
    }
    let params = query_params(query)?;
    let value = |name: &str| -> Result<Option<String>, GatewayError> {
        let mut found = params.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
        let first = found.next();
        if let Some(first) = first {
            if found.any(|v| v != first) {
                return Err(GatewayError::invalid(
                    format!("query parameter {name} sent more than once with different values"),
                    None,
                ));
            }
        }
        Ok(first.cloned())
    };
    // Sluice meters server-sent events; Gemini streams a JSON array without `alt=sse`.
    if stream && value("alt")?.as_deref() != Some("sse") {
        return Err(GatewayError::invalid(
            "streamGenerateContent is served as server-sent events only: add ?alt=sse (the google-genai SDK always does)",
            None,
        ));
    }
    Ok(Target {
        model: model.to_owned(),
        stream,
        query_key: value("key")?,
    })
}

/// `application/x-www-form-urlencoded` pairs, decoded.
fn query_params(query: Option<&str>) -> Result<Vec<(String, String)>, GatewayError> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let decode = |s: &str| {
                percent_decode(&s.replace('+', " ")).ok_or_else(|| {
                    GatewayError::invalid("the query is not valid percent-encoded UTF-8", None)
                })
            };
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// RFC 3986 percent-decoding; `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str, query: Option<&str>) -> Target {
        match parse("POST", path, query) {
            Some(Ok(t)) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    fn status(path: &str, query: Option<&str>) -> u16 {
        match parse("POST", path, query) {
            Some(Err(e)) => e.status().as_u16(),
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn both_verbs_under_both_versions() {
        for prefix in ["/v1beta", "/v1"] {
            let t = ok(
                &format!("{prefix}/models/gemini-2.5-flash:generateContent"),
                None,
            );
            assert_eq!((t.model.as_str(), t.stream), ("gemini-2.5-flash", false));
            let t = ok(
                &format!("{prefix}/models/gemini-2.5-flash:streamGenerateContent"),
                Some("alt=sse"),
            );
            assert!(t.stream, "{prefix}");
        }
    }

    #[test]
    fn percent_encoding_is_decoded_first() {
        // `models%2F...`: the SDK's `models/{id}` with its slash encoded.
        let t = ok("/v1beta/models%2Fgemini-2.5-flash:generateContent", None);
        assert_eq!(t.model, "gemini-2.5-flash");
        let t = ok("/v1beta/models/gemini%2D2.5-flash%3AgenerateContent", None);
        assert_eq!(t.model, "gemini-2.5-flash");
        // A decoded slash inside the model would change the upstream path.
        assert_eq!(
            status(
                "/v1beta/models/models%2Fgemini-2.5-flash:generateContent",
                None
            ),
            400
        );
        assert_eq!(
            status("/v1beta/models/a%2F..%2Fb:generateContent", None),
            400
        );
        assert_eq!(
            status("/v1beta/models/gem%zzini:generateContent", None),
            400
        );
        assert_eq!(
            status("/v1beta/models/gem%FFini:generateContent", None),
            400
        );
    }

    #[test]
    fn odd_models_are_400s_naming_the_model() {
        for path in [
            "/v1beta/models/:generateContent",
            "/v1beta/models/gemini 2.5:generateContent",
            "/v1beta/models/gemini?x:generateContent",
            "/v1/models/:streamGenerateContent",
        ] {
            match parse("POST", path, Some("alt=sse")) {
                Some(Err(e)) => {
                    assert_eq!(e.status().as_u16(), 400, "{path}");
                    assert_eq!(e.openai_fields().1, Some("model"), "{path}");
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        let long = format!("/v1beta/models/{}:generateContent", "m".repeat(257));
        assert_eq!(status(&long, None), 400);
    }

    #[test]
    fn unknown_verbs_and_shapes_are_google_404s() {
        for path in [
            "/v1beta/models/gemini-2.5-flash:countTokens",
            "/v1beta/models/gemini-2.5-flash:generatecontent",
            "/v1beta/models/gemini-2.5-flash:generateContent/",
            "/v1beta/models/gemini-2.5-flash:generateContent:x",
            "/v1beta/models/gemini-2.5-flash",
            "/v1beta/gemini-2.5-flash:generateContent",
            "/v1beta/tunedModels/t:generateContent",
            "/v1beta/models",
            "/v1beta",
            "/v1/models/gemini-2.5-flash:countTokens",
            "/v1/models/gemini-2.5-flash:batchGenerateContent",
        ] {
            assert_eq!(status(path, None), 404, "{path}");
        }
    }

    #[test]
    fn other_v1_paths_are_not_claimed() {
        for path in [
            "/v1/chat/completions",
            "/v1/models",
            "/v1/models/gpt-4o",
            "/v1/models/ft:gpt-4o-mini:acme::abc123",
            "/v1/gemini-2.5-flash:generateContent",
            "/v1/models/gem%zz",
            "/healthz",
        ] {
            assert!(parse("GET", path, None).is_none(), "{path}");
        }
    }

    #[test]
    fn streams_must_be_sse() {
        let path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent";
        assert_eq!(status(path, None), 400);
        assert_eq!(status(path, Some("alt=json")), 400);
        assert_eq!(status(path, Some("alt=sse&alt=json")), 400);
        assert!(ok(path, Some("alt=sse&alt=sse")).stream);
    }

    #[test]
    fn the_query_key_is_read_and_decoded() {
        let path = "/v1beta/models/gemini-2.5-flash:generateContent";
        assert_eq!(ok(path, None).query_key, None);
        assert_eq!(
            ok(path, Some("key=sk%2Bteam&$alt=json"))
                .query_key
                .as_deref(),
            Some("sk+team")
        );
        assert_eq!(
            ok(path, Some("key=a&key=a")).query_key.as_deref(),
            Some("a")
        );
        assert_eq!(status(path, Some("key=a&key=b")), 400);
    }
}
