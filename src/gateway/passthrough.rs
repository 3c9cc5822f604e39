//! Pass-through: every other `/v1/...` path an OpenAI or Anthropic SDK calls (moderations,
//! images, audio, `responses/{id}`, `messages/count_tokens`, ...) goes to the provider that
//! serves it, with the caller identified as on every route and the provider key instead of
//! the caller's. Bodies stream both ways (an audio upload is never held whole); the answer
//! is relayed unchanged and counted in the metrics when its body ends.
//!
//! Which provider serves a path is decided behind the provider seam
//! (`providers::pass_through`, from documented lists of each API's first path segments).
//! The Files and Batch APIs are not here but in `owned` (their objects have owners); the
//! Uploads API and the admin APIs are refused with a clear 404, as are paths neither
//! provider serves.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use http_body::{Body, Frame, SizeHint};

use super::*;
use crate::types::Api;

/// The Uploads API makes files in parts; ownership of its objects is not built (the
/// Files API, `owned`, takes files of up to 512 MB in one streamed request).
const OWNED: &[&str] = &["uploads"];

/// Account administration (OpenAI `organization`, `projects`; Anthropic `organizations`):
/// admin keys, never a gateway client's business.
const ADMIN: &[&str] = &["organization", "organizations", "projects"];

/// Operations whose answer reports the usage of new work, priced when the model the answer
/// names has a row in the price table. Retrievals (`GET /v1/responses/{id}`) report a usage
/// already paid for, so nothing else is priced.
const PRICED: &[&str] = &[
    "/v1/audio/transcriptions",
    "/v1/audio/translations",
    "/v1/images/edits",
    "/v1/images/generations",
    "/v1/images/variations",
    "/v1/responses/compact",
];

/// Most of a JSON answer read for its `model` and `usage` while it streams by.
const CAPTURE_BYTES: usize = 1024 * 1024;
/// Most of a JSON request body kept for its `model` while it streams up.
const CAPTURE_REQUEST_BYTES: usize = 64 * 1024;

/// The label of a pass-through answer's tier: always sent at once.
const TIER: Tier = Tier::Interactive;

/// Whether `path` is one the pass-through considers (it may still refuse it).
pub(super) fn owns(path: &str) -> bool {
    path.starts_with("/v1/") && path != "/v1/models"
}

/// The API a pass-through caller speaks, for the shape of gateway errors: Anthropic for
/// Anthropic-only paths or when the head is an Anthropic SDK's (`anthropic-version`, or
/// `x-api-key` without `Authorization`), OpenAI otherwise and on the gateway's own paths.
pub(super) fn api(path: &str, headers: &HeaderMap) -> Api {
    if !owns(path) {
        return Api::OpenAi;
    }
    let anthropic_head = headers.contains_key("anthropic-version")
        || (headers.contains_key("x-api-key") && !headers.contains_key(header::AUTHORIZATION));
    if anthropic_only(path) || anthropic_head {
        Api::Anthropic
    } else {
        Api::OpenAi
    }
}

/// The same from the path alone (errors answered before the head is parsed).
pub(super) fn api_for_path(path: &str) -> Api {
    if anthropic_only(path) {
        Api::Anthropic
    } else {
        Api::OpenAi
    }
}

fn anthropic_only(path: &str) -> bool {
    let first = path
        .strip_prefix("/v1/")
        .and_then(|rest| rest.split('/').next());
    matches!(first, Some("messages" | "complete"))
}

/// The provider serving `method path`, or why it is not passed through.
pub(super) fn provider_for(
    method: &Method,
    path: &str,
    api: Api,
) -> Result<Provider, GatewayError> {
    let refuse = |reason, code| GatewayError::NotPassedThrough {
        method: method.to_string(),
        path: path.to_owned(),
        reason,
        code,
    };
    let rest = path.strip_prefix("/v1/").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| unsafe_segment(s)) {
        return Err(refuse(
            "the path has an empty, `.` or `..` segment or an encoded `.`, `/` or `\\`, which Sluice does not pass on",
            "invalid_path",
        ));
    }
    let first = segments[0];
    if OWNED.contains(&first) {
        return Err(refuse(
            "the Uploads API is not passed through (its objects would need per-client ownership); upload files of up to 512 MB with POST /v1/files",
            "unsupported_endpoint",
        ));
    }
    if ADMIN.contains(&first) {
        return Err(refuse(
            "the provider's admin API is not passed through",
            "unsupported_endpoint",
        ));
    }
    crate::providers::pass_through(first, api == Api::Anthropic).ok_or_else(|| {
        refuse(
            "no such endpoint: neither the OpenAI nor the Anthropic API serves this path",
            "unknown_url",
        )
    })
}

/// A segment that could leave `/v1/` at the provider, or mean something else to it.
fn unsafe_segment(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    s.is_empty()
        || s == "."
        || s == ".."
        || s.contains('\\')
        || ["%2e", "%2f", "%5c", "%00"]
            .iter()
            .any(|e| lower.contains(e))
}

/// `GET /v1/models/{id}`: Sluice's own list answers for the models it prices or maps;
/// any other id is the provider's to answer.
pub(super) async fn model(
    app: &Arc<App>,
    parts: &http::request::Parts,
    unread: &mut Option<Incoming>,
    known: &mut Known,
) -> Result<Response<RespBody>, GatewayError> {
    let id = &parts.uri.path()["/v1/models/".len()..];
    let client = app.policies.identify(gateway_key(&parts.headers)?)?;
    known.client = Some(client.name.clone());
    match models(app, parts, Some(id)) {
        Err(e @ GatewayError::ModelNotFound { .. }) => {
            let provider = provider_for(&parts.method, parts.uri.path(), api_of(parts))?;
            if !app.forwarder.passes_through(provider) {
                return Err(e);
            }
            serve(app, parts, unread, known).await
        }
        answered => answered,
    }
}

fn api_of(parts: &http::request::Parts) -> Api {
    api(parts.uri.path(), &parts.headers)
}

/// Passes one request through: identify, choose the provider, stream the body up, relay
/// the answer as it comes, account for it when it ends.
pub(super) async fn serve(
    app: &Arc<App>,
    parts: &http::request::Parts,
    unread: &mut Option<Incoming>,
    known: &mut Known,
) -> Result<Response<RespBody>, GatewayError> {
    let client = app.policies.identify(gateway_key(&parts.headers)?)?;
    known.client = Some(client.name.clone());
    let path = parts.uri.path();
    let provider = provider_for(&parts.method, path, api_of(parts))?;
    known.provider = Some(provider);
    let admitted = ingress::admit(&parts.headers)?;
    let route = client.route(path, "", admitted.route_hint)?;
    known.route = Some(route.name.clone());
    let body = upload(app, &parts.headers, unread, app.max_body_bytes)?;
    let state = body.state.clone();
    let to = forward::Pass {
        provider,
        method: parts.method.clone(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map_or(path, |pq| pq.as_str())
            .strip_prefix("/v1")
            .unwrap_or_default(),
    };
    let ctx = Ctx {
        client: client.name.clone(),
        route: route.name.clone(),
        provider,
        model: String::new(),
        tier: TIER,
        sla: Sla::INTERACTIVE,
        arrived: Instant::now(),
    };
    let billing = client.billing(provider);
    let sent = Instant::now();
    let resp = match app
        .forwarder
        .pass(to, &parts.headers, billing, body.boxed_unsync())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            // The upload's own limit, not the provider, ended the request.
            let e = state.error().unwrap_or(e);
            if e.source() != crate::error::Source::Downstream {
                respond::record_failure(app, &ctx, &e);
            }
            return Err(e);
        }
    };
    app.metrics()
        .upstream_duration
        .with_label_values(&[provider.as_str(), TIER.as_str()])
        .observe(sent.elapsed().as_secs_f64());
    let priced = parts.method == Method::POST && PRICED.contains(&path);
    Ok(relay(app.clone(), ctx, priced, state, resp))
}

/// The caller's body, bounded by `limit` and the gateway's body read time limit.
pub(super) fn upload(
    app: &App,
    headers: &HeaderMap,
    unread: &mut Option<Incoming>,
    limit: usize,
) -> Result<Upload, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let Some(inner) = unread.take() else {
        return Err(GatewayError::invalid(
            "the request body was already read",
            None,
        ));
    };
    Ok(Upload {
        inner,
        read: 0,
        limit,
        deadline: Box::pin(tokio::time::sleep(app.body_read_timeout)),
        state: Arc::new(UploadState {
            why: AtomicU8::new(0),
            limit,
            json: Mutex::new(is_json(headers).then(BytesMut::new)),
        }),
    })
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The upstream answer relayed as it arrives, recorded once when its body ends under the
/// model its request named (else its answer).
fn relay(
    app: Arc<App>,
    ctx: Ctx,
    priced: bool,
    request: Arc<UploadState>,
    resp: http::Response<Incoming>,
) -> Response<RespBody> {
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    let json = is_json(&parts.headers);
    let finish = move |answer: Option<Bytes>| {
        let (named, usage) = answer.map_or((None, None), |a| read_json(&a, priced));
        let model = request.model().or(named).unwrap_or_default();
        // Usage is kept only where it prices: an unpriced model's tokens would be "other".
        let usage = usage.filter(|u| app.accountant.quote(&model, TIER, u).is_some());
        app.accountant.record(&Answer {
            model: &model,
            usage,
            ..ctx.answer(status.as_u16(), None)
        });
    };
    let tap = Tap {
        inner: body,
        captured: json.then(BytesMut::new),
        finish: Some(Box::new(finish)),
    };
    let mut out = Response::new(tap.boxed_unsync());
    *out.status_mut() = status;
    *out.headers_mut() = forward::relay_headers(parts.headers);
    out.headers_mut()
        .insert(X_SLUICE_TIER, HeaderValue::from_static(TIER.as_str()));
    out
}

/// The same for an answer that is not priced and whose request had no body (downloads).
pub(super) fn relay_unpriced(
    app: Arc<App>,
    ctx: &Ctx,
    resp: http::Response<Incoming>,
) -> Response<RespBody> {
    let request = Arc::new(UploadState {
        why: AtomicU8::new(0),
        limit: 0,
        json: Mutex::new(None),
    });
    relay(app, ctx.clone(), false, request, resp)
}

/// The `model` a JSON body names and, for a priced operation's answer, the usage it reports.
fn read_json(answer: &[u8], priced: bool) -> (Option<String>, Option<crate::types::Usage>) {
    #[derive(serde::Deserialize)]
    struct Named {
        model: Option<String>,
    }
    let model = serde_json::from_slice::<Named>(answer)
        .ok()
        .and_then(|n| n.model);
    let usage = priced.then(|| crate::usage::from_json(answer)).flatten();
    (model, usage)
}

/// What stopped an upload early, for the error the caller gets; the start of a JSON body.
pub(super) struct UploadState {
    why: AtomicU8,
    limit: usize,
    /// Up to [`CAPTURE_REQUEST_BYTES`] of a JSON body; `None` past that or for other types.
    json: Mutex<Option<BytesMut>>,
}

const UPLOAD_TOO_LARGE: u8 = 1;
const UPLOAD_TOO_SLOW: u8 = 2;

impl UploadState {
    fn set(&self, why: u8) {
        self.why.store(why, Ordering::Relaxed);
    }

    fn keep(&self, data: &[u8]) {
        let mut json = self.json.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(buf) = json.as_mut() {
            if buf.len() + data.len() > CAPTURE_REQUEST_BYTES {
                *json = None;
            } else {
                buf.extend_from_slice(data);
            }
        }
    }

    /// The `model` of a whole JSON request body.
    fn model(&self) -> Option<String> {
        let json = self.json.lock().unwrap_or_else(|p| p.into_inner());
        read_json(json.as_ref()?, false).0
    }

    pub(super) fn error(&self) -> Option<GatewayError> {
        match self.why.load(Ordering::Relaxed) {
            UPLOAD_TOO_LARGE => Some(GatewayError::BodyTooLarge { limit: self.limit }),
            UPLOAD_TOO_SLOW => Some(GatewayError::BodyTimeout),
            _ => None,
        }
    }
}

/// The caller's body on its way up: frames passed on as they arrive, cut with an error
/// past the size limit or the read deadline (the provider then sees an aborted request).
pub(super) struct Upload {
    inner: Incoming,
    read: usize,
    limit: usize,
    deadline: Pin<Box<tokio::time::Sleep>>,
    pub(super) state: Arc<UploadState>,
}

impl Body for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.state.set(UPLOAD_TOO_SLOW);
            return Poll::Ready(Some(Err("timed out reading the request body".into())));
        }
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len();
                    self.state.keep(data);
                }
                if self.read > self.limit {
                    self.state.set(UPLOAD_TOO_LARGE);
                    return Poll::Ready(Some(Err("request body exceeds the limit".into())));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e.into()))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        // An exact length becomes the upstream request's `content-length`.
        self.inner.size_hint()
    }
}

type Finish = Box<dyn FnOnce(Option<Bytes>) + Send>;

/// The provider's answer on its way down, frame by frame; a JSON answer is also kept (up
/// to [`CAPTURE_BYTES`]) for its model and usage. `finish` runs once: at the end, on an
/// error, or when the caller goes away.
struct Tap {
    inner: Incoming,
    captured: Option<BytesMut>,
    finish: Option<Finish>,
}

impl Tap {
    fn end(&mut self) {
        if let Some(f) = self.finish.take() {
            f(self.captured.take().map(BytesMut::freeze));
        }
    }
}

impl Body for Tap {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let (Some(data), Some(buf)) = (frame.data_ref(), self.captured.as_mut()) {
                    if buf.len() + data.len() > CAPTURE_BYTES {
                        self.captured = None;
                    } else {
                        buf.extend_from_slice(data);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                self.captured = None;
                self.end();
                Poll::Ready(Some(Err(e.into())))
            }
            None => {
                self.end();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        // A sized body is dropped once its last frame is out; one dropped before that
        // (the caller went away) still counts, unread.
        if !self.inner.is_end_stream() {
            self.captured = None;
        }
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(method: Method, path: &str, api: Api) -> Result<&'static str, String> {
        provider_for(&method, path, api)
            .map(Provider::as_str)
            .map_err(|e| e.status_label().to_owned())
    }

    #[test]
    fn paths_go_to_the_provider_that_serves_them() {
        for (path, api, want) in [
            ("/v1/moderations", Api::OpenAi, "openai"),
            ("/v1/moderations", Api::Anthropic, "openai"),
            ("/v1/images/generations", Api::OpenAi, "openai"),
            ("/v1/audio/transcriptions", Api::OpenAi, "openai"),
            ("/v1/responses/resp_1/input_items", Api::OpenAi, "openai"),
            ("/v1/messages/count_tokens", Api::OpenAi, "anthropic"),
            ("/v1/models/claude-x", Api::Anthropic, "anthropic"),
            ("/v1/models/ft:gpt-4o:org::id", Api::OpenAi, "openai"),
            ("/v1/skills", Api::Anthropic, "anthropic"),
            ("/v1/complete", Api::Anthropic, "anthropic"),
        ] {
            assert_eq!(provider(Method::POST, path, api), Ok(want), "{path}");
        }
    }

    #[test]
    fn owned_admin_unknown_and_escaping_paths_are_refused() {
        for (path, code) in [
            ("/v1/uploads", "unsupported_endpoint"),
            ("/v1/uploads/u/parts", "unsupported_endpoint"),
            ("/v1/organization/users", "unsupported_endpoint"),
            ("/v1/organizations/api_keys", "unsupported_endpoint"),
            ("/v1/nonsense", "unknown_url"),
            ("/v1/", "invalid_path"),
            ("/v1/models/../files", "invalid_path"),
            ("/v1/responses/./x", "invalid_path"),
            ("/v1/responses//x", "invalid_path"),
            ("/v1/responses/%2e%2e/files", "invalid_path"),
            ("/v1/responses/a%2Fb", "invalid_path"),
            ("/v1/responses/a%5cb", "invalid_path"),
            ("/v1/responses/a\\b", "invalid_path"),
        ] {
            assert_eq!(
                provider(Method::GET, path, Api::OpenAi),
                Err(code.to_owned()),
                "{path}"
            );
        }
    }

    #[test]
    fn the_caller_api_follows_anthropic_heads_and_paths() {
        let mut h = HeaderMap::new();
        assert_eq!(api("/v1/models/x", &h), Api::OpenAi);
        h.insert("x-api-key", HeaderValue::from_static("k"));
        assert_eq!(api("/v1/models", &h), Api::OpenAi, "the gateway's own list");
        h.clear();
        assert_eq!(api("/v1/messages/count_tokens", &h), Api::Anthropic);
        h.insert("x-api-key", HeaderValue::from_static("k"));
        assert_eq!(api("/v1/models/x", &h), Api::Anthropic);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert_eq!(api("/v1/models/x", &h), Api::OpenAi);
        h.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        assert_eq!(api("/v1/models/x", &h), Api::Anthropic);
    }

    #[test]
    fn only_new_work_is_priced_and_models_are_read_from_json() {
        let body = br#"{"model":"gpt-4o-mini","usage":{"input_tokens":3,"output_tokens":2}}"#;
        let (model, usage) = read_json(body, true);
        assert_eq!(model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(usage.map(|u| u.output_tokens), Some(2));
        assert_eq!(read_json(body, false).1, None);
        assert_eq!(read_json(b"not json", true), (None, None));
        assert_eq!(read_json(br#"{"model":5}"#, false), (None, None));
    }
}
