//! OAuth 2.0 access tokens for a service account (provider-apis.md 3.6, "JWT bearer
//! grant"): an RS256 assertion signed with the key's `private_key`, POSTed form-encoded
//! to its `token_uri` (so a key whose `token_uri` names the simulator is served by it).
//! The token is cached and refreshed ahead of its expiry; concurrent callers share one
//! refresh. Neither the key nor a token is ever logged: the key stays inside
//! `jsonwebtoken::EncodingKey` (no `Debug` of it here), header values are sensitive.

use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::providers::{BatchApiError, Http};

/// The scope covering Vertex AI and Cloud Storage.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Lifetime asked for in the assertion (Google's maximum).
const ASSERTION_LIFETIME_S: i64 = 3600;
/// Refresh this long before expiry (at most half the lifetime), so a call never carries
/// a token that expires on the way.
const REFRESH_AHEAD: Duration = Duration::from_secs(300);

/// The fields of a service-account key JSON Sluice reads.
#[derive(Deserialize)]
struct KeyFile {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

/// A parsed service-account key. No `Debug`: it holds the private key.
pub struct ServiceAccount {
    pub client_email: String,
    pub token_uri: String,
    key_id: Option<String>,
    key: EncodingKey,
}

impl ServiceAccount {
    /// Parses a key JSON. Errors never quote the file (it holds the private key).
    pub fn from_json(json: &[u8]) -> Result<ServiceAccount, String> {
        let f: KeyFile = serde_json::from_slice(json).map_err(|e| {
            format!(
                "not a service-account key JSON (line {}, column {})",
                e.line(),
                e.column()
            )
        })?;
        if let Some(kind) = f.kind.as_deref().filter(|k| *k != "service_account") {
            return Err(format!(
                "the key is of type {kind:?}; a service-account key is needed"
            ));
        }
        if f.client_email.is_empty() {
            return Err("the service-account key has no client_email".into());
        }
        if f.private_key.is_empty() {
            return Err("the service-account key has no private_key".into());
        }
        let key = EncodingKey::from_rsa_pem(f.private_key.as_bytes())
            .map_err(|e| format!("the service-account private_key is not an RSA PEM key: {e}"))?;
        let token_uri = f
            .token_uri
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| GOOGLE_TOKEN_URI.to_owned());
        if !(token_uri.starts_with("https://") || token_uri.starts_with("http://")) {
            return Err(format!(
                "the key's token_uri {token_uri:?} is not an http(s) URL"
            ));
        }
        Ok(ServiceAccount {
            client_email: f.client_email,
            token_uri,
            key_id: f.private_key_id.filter(|k| !k.is_empty()),
            key,
        })
    }

    /// The signed assertion for `now` (Unix seconds).
    pub fn assertion(&self, now: i64) -> Result<String, String> {
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: i64,
            exp: i64,
        }
        let mut header = Header::new(Algorithm::RS256);
        // The official library names the key, so Google can pick it without trying each.
        header.kid = self.key_id.clone();
        let claims = Claims {
            iss: &self.client_email,
            scope: CLOUD_PLATFORM,
            aud: &self.token_uri,
            iat: now,
            exp: now + ASSERTION_LIFETIME_S,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("cannot sign the token assertion: {e}"))
    }
}

struct Cached {
    /// `Bearer <token>`, sensitive.
    header: HeaderValue,
    refresh_at_ms: i64,
    expires_at_ms: i64,
}

/// Access tokens of one service account.
pub struct TokenSource {
    account: ServiceAccount,
    /// Base URL = the `token_uri` itself; no credential headers.
    http: Http,
    clock: Clock,
    /// Held across a refresh: callers that arrive meanwhile wait and take its token
    /// (single flight). Control-plane calls are few, so one lock costs nothing.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

impl TokenSource {
    /// `http` must have the account's `token_uri` as its base URL.
    pub fn new(account: ServiceAccount, http: Http, clock: Clock) -> TokenSource {
        TokenSource {
            account,
            http,
            clock,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// `Bearer <token>`: the cached one, or a new one when it is due for refresh.
    pub async fn bearer(&self) -> Result<HeaderValue, BatchApiError> {
        let mut cached = self.cached.lock().await;
        let now = self.clock.now_ms();
        if let Some(c) = cached.as_ref().filter(|c| now < c.refresh_at_ms) {
            return Ok(c.header.clone());
        }
        match self.fetch(now).await {
            Ok(fresh) => {
                let header = fresh.header.clone();
                *cached = Some(fresh);
                Ok(header)
            }
            // A refresh ahead of time that failed: the old token still works for now.
            Err(e) => match cached.as_ref().filter(|c| now + 30_000 < c.expires_at_ms) {
                Some(c) => {
                    tracing::warn!(error = %e, "Vertex AI token refresh failed; using the current token");
                    Ok(c.header.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Forgets `used` after a 401, unless a newer token already replaced it.
    pub async fn invalidate(&self, used: &HeaderValue) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.header == *used) {
            *cached = None;
        }
    }

    async fn fetch(&self, now_ms: i64) -> Result<Cached, BatchApiError> {
        let assertion = self
            .account
            .assertion(now_ms.div_euclid(1000))
            .map_err(|e| self.http.decode_error(e))?;
        let form = format!(
            "grant_type={}&assertion={assertion}",
            form_encode(JWT_BEARER)
        );
        let body = Full::new(Bytes::from(form))
            .map_err(|e| match e {})
            .boxed_unsync();
        let resp = self
            .http
            .call(Method::POST, "", body, "application/x-www-form-urlencoded")
            .await
            .map_err(explain_refusal)?;
        let raw = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| BatchApiError::Transport {
                provider: self.http.provider(),
                reason: e.to_string(),
            })?;
        let answer: TokenAnswer = serde_json::from_slice(&raw)
            .map_err(|e| self.http.decode_error(format!("token answer: {e}")))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", answer.access_token))
            .map_err(|_| {
                self.http
                    .decode_error("the access token is not a valid header value")
            })?;
        header.set_sensitive(true);
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let ahead = REFRESH_AHEAD.min(lifetime / 2);
        Ok(Cached {
            header,
            refresh_at_ms: now_ms + ms(lifetime - ahead),
            expires_at_ms: now_ms + ms(lifetime),
        })
    }
}

/// A refused grant (`{"error","error_description"}`) as a clear message; 4xx stays
/// non-retryable (a wrong key does not heal), 429/5xx retryable.
fn explain_refusal(e: BatchApiError) -> BatchApiError {
    match e {
        BatchApiError::Status {
            provider,
            status,
            body,
            retry_after,
        } => {
            let reason = serde_json::from_str::<TokenError>(&body)
                .ok()
                .filter(|t| !t.error.is_empty())
                .map(|t| format!("{}: {}", t.error, t.error_description))
                .unwrap_or(body);
            let hint = if status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED {
                " (check the service-account key and the clock)"
            } else {
                ""
            };
            BatchApiError::Status {
                provider,
                status,
                body: format!("OAuth token request refused: {reason}{hint}"),
                retry_after,
            }
        }
        other => other,
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `application/x-www-form-urlencoded` value encoding (the assertion is base64url and dots:
/// nothing to encode).
fn form_encode(s: &str) -> String {
    super::gcs::encode(s)
}
