//! Google's OAuth 2.0 token endpoint for service accounts (reference 3.6, "JWT bearer
//! grant"): `POST /token`, form-encoded
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`.
//!
//! The JWT must be three base64url segments; the header `{"alg":"RS256","typ":"JWT"}`
//! (`typ` optional, `kid` allowed); the claims `iss` (non-empty), `scope` (space-separated,
//! containing `https://www.googleapis.com/auth/cloud-platform`), `aud`
//! (`https://oauth2.googleapis.com/token`, or `http(s)://<Host of the request>/token` for a
//! client whose `token_uri` points at the simulator), integer `iat` and `exp` with
//! `iat < exp <= iat + 3600`, `exp` in the future and `iat` at most 5 minutes in the
//! future (wall clock). The RS256 signature is NOT verified (any non-empty base64url
//! third segment is accepted): the simulator has no public keys.
//!
//! Success: `{"access_token":"ya29.…","expires_in":N,"token_type":"Bearer"}` with `N` =
//! [`super::VertexConfig::token_ttl`] seconds (default 3599). The token is valid on the
//! Vertex and Cloud Storage routes for that long, measured on `tokio::time::Instant`
//! (paused-time tests can advance past it). Failures are HTTP 400 with
//! `{"error","error_description"}`: `invalid_request` (not a POST form body, missing
//! field), `unsupported_grant_type` (another grant type; this is what Google answers, the
//! reference names only `invalid_grant`), `invalid_scope`, `invalid_grant` (malformed
//! JWT, wrong `alg`/`aud`, bad or stale `iat`/`exp`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::body::SimBody;
use super::error::splitmix;
use super::files::query_params;

/// The grant type of a service-account assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The scope that covers Vertex AI and Cloud Storage.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's token URI (the usual `aud`).
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Largest accepted `exp - iat`.
const MAX_LIFETIME: i64 = 3600;
/// Tolerated clock skew for `iat` in the future.
const SKEW: i64 = 300;

/// Issued access tokens and when they stop working.
#[derive(Debug, Default)]
pub struct TokenStore {
    inner: Mutex<HashMap<String, Instant>>,
}

impl TokenStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `headers` carry `Authorization: Bearer <a live token of this store>`.
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
        else {
            return false;
        };
        let now = Instant::now();
        let mut inner = self.lock();
        inner.retain(|_, until| *until > now);
        inner.contains_key(token)
    }

    fn issue(&self, salt: u64, seq: u64, ttl: Duration) -> String {
        let token = format!(
            "ya29.c.sim{:016x}{:016x}",
            splitmix(salt ^ seq.rotate_left(29)),
            splitmix(seq ^ 0x70CE)
        );
        self.lock().insert(token.clone(), Instant::now() + ttl);
        token
    }
}

/// An OAuth error (`{"error","error_description"}`, HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    /// `error`.
    pub error: &'static str,
    /// `error_description`.
    pub description: String,
}

fn fail(error: &'static str, description: impl Into<String>) -> OAuthError {
    OAuthError {
        error,
        description: description.into(),
    }
}

fn invalid_grant(description: impl Into<String>) -> OAuthError {
    fail("invalid_grant", description)
}

fn segment(s: &str, what: &str) -> Result<Value, OAuthError> {
    let raw = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| invalid_grant(format!("Invalid JWT: the {what} is not base64url.")))?;
    let value: Value = serde_json::from_slice(&raw)
        .map_err(|_| invalid_grant(format!("Invalid JWT: the {what} is not JSON.")))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(invalid_grant(format!(
            "Invalid JWT: the {what} is not a JSON object."
        )))
    }
}

/// Checks a service-account assertion at wall-clock `now` (Unix seconds).
pub fn check_assertion(jwt: &str, now: i64, host: Option<&str>) -> Result<(), OAuthError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(invalid_grant(
            "Invalid JWT: a JWT has three dot-separated parts.",
        ));
    };
    let header = segment(header, "header")?;
    let claims = segment(claims, "claim set")?;
    if signature.is_empty()
        || URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .is_err()
    {
        return Err(invalid_grant("Invalid JWT Signature."));
    }
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(invalid_grant("Invalid JWT: alg must be RS256."));
    }
    if header.get("typ").is_some_and(|t| t.as_str() != Some("JWT")) {
        return Err(invalid_grant("Invalid JWT: typ must be JWT."));
    }
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
    if text("iss").is_empty() {
        return Err(invalid_grant("Invalid JWT: the iss claim is missing."));
    }
    let aud = text("aud");
    let ours = host
        .is_some_and(|h| aud == format!("http://{h}/token") || aud == format!("https://{h}/token"));
    if aud != GOOGLE_TOKEN_URI && !ours {
        return Err(invalid_grant(format!(
            "Invalid JWT: Failed audience check. The right audience is {GOOGLE_TOKEN_URI}"
        )));
    }
    let scope = text("scope");
    if scope.is_empty() {
        return Err(fail(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        ));
    }
    if !scope.split(' ').any(|s| s == CLOUD_PLATFORM) {
        return Err(fail(
            "invalid_scope",
            format!("The simulator only grants {CLOUD_PLATFORM}; got: {scope}"),
        ));
    }
    let stale = || {
        invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        )
    };
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return Err(stale());
    };
    if exp <= iat || exp - iat > MAX_LIFETIME || exp <= now || iat > now + SKEW {
        return Err(stale());
    }
    Ok(())
}

fn oauth_json(status: StatusCode, value: &Value) -> Response<SimBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(SimBody::full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The error response.
pub fn error_response(err: &OAuthError) -> Response<SimBody> {
    oauth_json(
        StatusCode::BAD_REQUEST,
        &json!({"error": err.error, "error_description": err.description}),
    )
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `POST /token`.
pub fn token(
    store: &TokenStore,
    salt: u64,
    ttl: Duration,
    parts: &Parts,
    body: &[u8],
    seq: u64,
) -> Response<SimBody> {
    match grant(store, salt, ttl, parts, body, seq) {
        Ok(token) => oauth_json(
            StatusCode::OK,
            &json!({"access_token": token, "expires_in": ttl.as_secs(), "token_type": "Bearer"}),
        ),
        Err(e) => error_response(&e),
    }
}

fn grant(
    store: &TokenStore,
    salt: u64,
    ttl: Duration,
    parts: &Parts,
    body: &[u8],
    seq: u64,
) -> Result<String, OAuthError> {
    if parts.method != http::Method::POST {
        return Err(fail(
            "invalid_request",
            "The token endpoint only accepts POST.",
        ));
    }
    let form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !form {
        return Err(fail(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        ));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| fail("invalid_request", "The body is not UTF-8."))?;
    let params = query_params(Some(text));
    let find = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let grant_type = find("grant_type")
        .ok_or_else(|| fail("invalid_request", "Missing required parameter: grant_type"))?;
    if grant_type != JWT_BEARER {
        return Err(fail(
            "unsupported_grant_type",
            format!("Invalid grant_type: {grant_type}"),
        ));
    }
    let assertion = find("assertion")
        .filter(|a| !a.is_empty())
        .ok_or_else(|| fail("invalid_request", "Missing required parameter: assertion"))?;
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()));
    check_assertion(assertion, unix_secs(), host)?;
    Ok(store.issue(salt, seq, ttl))
}
