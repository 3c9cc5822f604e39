//! The explicit Files and Batch APIs: OpenAI `/v1/files` and `/v1/batches`, Anthropic
//! `/v1/messages/batches`, passed through to the provider under its key, with every object
//! owned by the client that created it.
//!
//! Ownership is a record in the store, written (durably) before the created object is
//! returned: another client, or an id Sluice's own batching created, gets the provider's
//! "no such object" 404, lists are filtered to the caller's objects, and a batch may only
//! name an input file its client owns. The result files of a batch become its client's as
//! soon as Sluice sees the batch name them. Anthropic's `results_url` is rewritten to the
//! gateway's own path, relative, so an SDK fetches results through Sluice at whatever base
//! URL it was given. Uploads and downloads (file content, batch results) stream; only the
//! small JSON objects and list pages are read whole.
//!
//! Pricing is the engine's (`batch::engine::explicit`): every batch recorded here is read
//! until it ends, then its result lines are priced into the ledger and metrics once.

use std::collections::HashSet;

use http_body_util::Empty;
use serde_json::Value;

use super::passthrough::{self, is_json};
use super::*;
use crate::store::{ObjectKind, Owned};

/// Largest file upload passed on: OpenAI's own per-file limit (reference 1.7). Streamed,
/// so the bound is the provider's, not the gateway's memory.
const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;
/// Largest Message Batches create body: Anthropic's own limit (reference 2.4), streamed.
const MAX_MESSAGE_BATCH_BYTES: usize = 256 * 1024 * 1024;
/// Largest `POST /v1/batches` body read (a few ids and metadata).
const MAX_BATCH_CREATE_BYTES: usize = 64 * 1024;
/// Largest JSON answer read whole: an object or one list page (10,000 files at most).
const MAX_JSON_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// Upstream pages read at most for one filtered list answer.
const MAX_LIST_PAGES: usize = 20;

/// One operation of the explicit APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    FileUpload,
    FileList,
    File(&'a str),
    FileContent(&'a str),
    FileDelete(&'a str),
    BatchCreate,
    BatchList,
    Batch(&'a str),
    BatchCancel(&'a str),
    MessageBatchCreate,
    MessageBatchList,
    MessageBatch(&'a str),
    MessageBatchCancel(&'a str),
    MessageBatchDelete(&'a str),
    MessageBatchResults(&'a str),
}

impl Op<'_> {
    fn provider(self) -> Provider {
        let message_batches = matches!(
            self,
            Op::MessageBatchCreate
                | Op::MessageBatchList
                | Op::MessageBatch(_)
                | Op::MessageBatchCancel(_)
                | Op::MessageBatchDelete(_)
                | Op::MessageBatchResults(_)
        );
        crate::providers::explicit_batch_api(message_batches)
    }

    /// The object an operation on one object names, and its kind.
    fn target(self) -> Option<(ObjectKind, &'static str, String)> {
        let file = |id: &str| Some((ObjectKind::File, "File", id.to_owned()));
        let batch = |id: &str| Some((ObjectKind::Batch, "Batch", id.to_owned()));
        let message_batch = |id: &str| Some((ObjectKind::Batch, "message batch", id.to_owned()));
        match self {
            Op::File(id) | Op::FileContent(id) | Op::FileDelete(id) => file(id),
            Op::Batch(id) | Op::BatchCancel(id) => batch(id),
            Op::MessageBatch(id)
            | Op::MessageBatchCancel(id)
            | Op::MessageBatchDelete(id)
            | Op::MessageBatchResults(id) => message_batch(id),
            _ => None,
        }
    }
}

/// Whether `path` belongs to the explicit Files and Batch APIs.
pub(super) fn owns(path: &str) -> bool {
    ["/v1/files", "/v1/batches", "/v1/messages/batches"]
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
}

/// The operation of `method path`, or why there is none.
fn op<'a>(method: &Method, path: &'a str) -> Result<Op<'a>, GatewayError> {
    let not_found = || GatewayError::NotFound {
        method: method.to_string(),
        path: path.to_owned(),
    };
    let not_allowed = || GatewayError::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_owned(),
    };
    let (base, rest) = if let Some(r) = path.strip_prefix("/v1/messages/batches") {
        ("messages", r)
    } else if let Some(r) = path.strip_prefix("/v1/files") {
        ("files", r)
    } else if let Some(r) = path.strip_prefix("/v1/batches") {
        ("batches", r)
    } else {
        return Err(not_found());
    };
    let segments: Vec<&str> = match rest.strip_prefix('/') {
        None if rest.is_empty() => Vec::new(),
        Some(r) => r.split('/').collect(),
        None => return Err(not_found()),
    };
    if segments.iter().any(|s| !safe_id(s)) {
        return Err(not_found());
    }
    let m = method.clone();
    let op = match (base, segments.as_slice(), m) {
        ("files", [], Method::POST) => Op::FileUpload,
        ("files", [], Method::GET) => Op::FileList,
        ("files", [id], Method::GET) => Op::File(id),
        ("files", [id], Method::DELETE) => Op::FileDelete(id),
        ("files", [id, "content"], Method::GET) => Op::FileContent(id),
        ("batches", [], Method::POST) => Op::BatchCreate,
        ("batches", [], Method::GET) => Op::BatchList,
        ("batches", [id], Method::GET) => Op::Batch(id),
        ("batches", [id, "cancel"], Method::POST) => Op::BatchCancel(id),
        ("messages", [], Method::POST) => Op::MessageBatchCreate,
        ("messages", [], Method::GET) => Op::MessageBatchList,
        ("messages", [id], Method::GET) => Op::MessageBatch(id),
        ("messages", [id], Method::DELETE) => Op::MessageBatchDelete(id),
        ("messages", [id, "cancel"], Method::POST) => Op::MessageBatchCancel(id),
        ("messages", [id, "results"], Method::GET) => Op::MessageBatchResults(id),
        ("files", [] | [_] | [_, "content"], _)
        | ("batches", [] | [_] | [_, "cancel"], _)
        | ("messages", [] | [_] | [_, "cancel" | "results"], _) => return Err(not_allowed()),
        _ => return Err(not_found()),
    };
    Ok(op)
}

/// Provider ids are short runs of letters, digits, `-` and `_`: anything else is no id
/// (and never reaches the provider's path or a list cursor).
fn safe_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What one request of the explicit APIs works with.
struct Call<'a> {
    app: &'a Arc<App>,
    parts: &'a http::request::Parts,
    client: &'a ClientPolicy,
    engine: &'a Arc<Engine>,
    provider: Provider,
    ctx: Ctx,
}

/// Serves one request of the explicit Files and Batch APIs.
pub(super) async fn serve(
    app: &Arc<App>,
    parts: &http::request::Parts,
    unread: &mut Option<Incoming>,
    known: &mut Known,
) -> Result<Response<RespBody>, GatewayError> {
    let client = app.policies.identify(gateway_key(&parts.headers)?)?;
    known.client = Some(client.name.clone());
    let op = op(&parts.method, parts.uri.path())?;
    let provider = op.provider();
    known.provider = Some(provider);
    let Some(engine) = app.engine.as_ref() else {
        return Err(GatewayError::NotPassedThrough {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            reason: "explicit Files and Batch API use needs the store (SLUICE_STORE), which keeps who owns each object",
            code: "unsupported_endpoint",
        });
    };
    let admitted = ingress::admit(&parts.headers)?;
    // Usage is attributed to the route of the inference endpoint the batch runs.
    let route_path = match op {
        Op::MessageBatchCreate => "/v1/messages",
        _ => parts.uri.path(),
    };
    let route = client.route(route_path, "", admitted.route_hint)?;
    known.route = Some(route.name.clone());
    let ctx = Ctx {
        client: client.name.clone(),
        route: route.name.clone(),
        provider,
        model: String::new(),
        tier: Tier::Interactive,
        sla: Sla::INTERACTIVE,
        arrived: Instant::now(),
    };
    let call = Call {
        app,
        parts,
        client,
        engine,
        provider,
        ctx,
    };
    let target = match op.target() {
        Some((kind, what, id)) => Some(call.check_owner(kind, what, &id).await?),
        None => None,
    };
    match op {
        Op::FileUpload => {
            let body = passthrough::upload(app, &parts.headers, unread, MAX_FILE_BYTES)?;
            let state = body.state.clone();
            let (status, headers, answer) = call
                .send_read(body.boxed_unsync())
                .await
                .map_err(|e| state.error().unwrap_or(e))?;
            if status.is_success() {
                call.own_object(ObjectKind::File, &read_id(&answer)?, &call.ctx.route)
                    .await?;
            }
            Ok(call.answer(status, headers, answer))
        }
        Op::MessageBatchCreate => {
            let body = passthrough::upload(app, &parts.headers, unread, MAX_MESSAGE_BATCH_BYTES)?;
            let state = body.state.clone();
            let (status, headers, answer) = call
                .send_read(body.boxed_unsync())
                .await
                .map_err(|e| state.error().unwrap_or(e))?;
            call.created_batch(status, headers, answer).await
        }
        Op::BatchCreate => {
            let body = read_small(app, unread, MAX_BATCH_CREATE_BYTES).await?;
            let route = call.check_batch_input(&body, admitted.route_hint).await?;
            let (status, headers, answer) = call.send_read(full_body(body)).await?;
            let call = Call {
                ctx: Ctx {
                    route: route.clone(),
                    ..call.ctx
                },
                ..call
            };
            call.created_batch(status, headers, answer).await
        }
        Op::FileList => call.list(ObjectKind::File, 10_000, "after").await,
        Op::BatchList => call.list(ObjectKind::Batch, 100, "after").await,
        Op::MessageBatchList => call.list(ObjectKind::Batch, 1000, "after_id").await,
        Op::Batch(_) | Op::BatchCancel(_) | Op::MessageBatch(_) | Op::MessageBatchCancel(_) => {
            let (status, headers, answer) = call.send_read(empty_body()).await?;
            if !status.is_success() {
                return Ok(call.answer(status, headers, answer));
            }
            let mut batch = parse(&answer)?;
            call.saw_batch(&mut batch).await?;
            Ok(call.answer(status, headers, Bytes::from(batch.to_string())))
        }
        Op::MessageBatchDelete(id) => {
            // Its results go with it: price it first if it ended and is not priced yet
            // (a priced batch is not priced again).
            if let Some(owned) = &target {
                if let Err(e) = engine.price_if_ended(owned).await {
                    tracing::warn!(batch = %id, error = %e, "pricing a batch before its deletion failed");
                }
            }
            call.stream().await
        }
        Op::FileDelete(_) => {
            // The file may be the output of one of the caller's batches that ended but is
            // not priced yet (a pass is at most a poll interval away): price those first.
            call.price_ended_batches().await;
            let (status, headers, answer) = call.send_read(empty_body()).await?;
            Ok(call.answer(status, headers, answer))
        }
        Op::File(_) => {
            let (status, headers, answer) = call.send_read(empty_body()).await?;
            Ok(call.answer(status, headers, answer))
        }
        Op::FileContent(_) | Op::MessageBatchResults(_) => call.stream().await,
    }
}

fn full_body(b: Bytes) -> crate::upstream::ReqBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

fn empty_body() -> crate::upstream::ReqBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A small request body, read whole within `limit` and the body read timeout.
async fn read_small(
    app: &App,
    unread: &mut Option<Incoming>,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let Some(body) = unread.take() else {
        return Err(GatewayError::invalid(
            "the request body was already read",
            None,
        ));
    };
    let read = tokio::time::timeout(app.body_read_timeout, Limited::new(body, limit).collect());
    match read.await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Ok(Err(e)) => Err(GatewayError::invalid(
            format!("the request body could not be read: {e}"),
            None,
        )),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

fn parse(answer: &[u8]) -> Result<Value, GatewayError> {
    serde_json::from_slice(answer).map_err(|e| GatewayError::UpstreamBadResponse {
        provider: "upstream",
        reason: format!("not JSON: {e}"),
    })
}

/// The `id` of a created object's JSON.
fn read_id(answer: &[u8]) -> Result<String, GatewayError> {
    id_of(&parse(answer)?)
}

fn id_of(object: &Value) -> Result<String, GatewayError> {
    object
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| safe_id(id))
        .map(str::to_owned)
        .ok_or_else(|| GatewayError::UpstreamBadResponse {
            provider: "upstream",
            reason: "the created object has no id".into(),
        })
}

/// Whether a batch object says it ended (OpenAI `status`, Anthropic `processing_status`).
fn ended(batch: &Value) -> bool {
    matches!(
        batch.get("status").and_then(Value::as_str),
        Some("completed" | "failed" | "expired" | "cancelled")
    ) || batch.get("processing_status").and_then(Value::as_str) == Some("ended")
}

impl Call<'_> {
    fn store(&self) -> &Arc<dyn crate::store::Store> {
        self.engine.store()
    }

    /// 404 unless this client owns the object.
    async fn check_owner(
        &self,
        kind: ObjectKind,
        what: &'static str,
        id: &str,
    ) -> Result<Owned, GatewayError> {
        match self.store().owned(self.provider, kind, id).await? {
            Some(o) if *o.client == *self.client.name => Ok(o),
            _ => Err(GatewayError::NoSuchObject {
                what,
                id: id.to_owned(),
            }),
        }
    }

    async fn own_object(
        &self,
        kind: ObjectKind,
        id: &str,
        route: &str,
    ) -> Result<(), GatewayError> {
        self.store()
            .own(Owned {
                provider: self.provider,
                kind,
                id: id.to_owned(),
                client: self.client.name.to_string(),
                route: route.to_owned(),
                created_at_ms: crate::clock::now_ms(),
            })
            .await?;
        Ok(())
    }

    /// Prices the caller's batches that ended and are not priced yet (best effort: a
    /// failure leaves them to the engine's passes).
    async fn price_ended_batches(&self) {
        let unpriced = match self.store().unpriced_batches(i64::MAX, 1000).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "listing unpriced batches before a file deletion failed");
                return;
            }
        };
        for batch in unpriced
            .iter()
            .filter(|b| b.provider == self.provider && *b.client == *self.client.name)
        {
            if let Err(e) = self.engine.price_if_ended(batch).await {
                tracing::warn!(batch = %batch.id, error = %e, "pricing a batch before a file deletion failed");
            }
        }
    }

    /// `POST /v1/batches`: the input file must be the caller's; the route is that of the
    /// endpoint the batch runs.
    async fn check_batch_input(
        &self,
        body: &[u8],
        hint: Option<&str>,
    ) -> Result<Arc<str>, GatewayError> {
        #[derive(serde::Deserialize)]
        struct Create {
            input_file_id: Option<String>,
            endpoint: Option<String>,
        }
        // Malformed bodies are the provider's to refuse, in its words; only a named file
        // must be checked.
        let create = serde_json::from_slice::<Create>(body).ok();
        let (file, endpoint) = create.map_or((None, None), |c| (c.input_file_id, c.endpoint));
        if let Some(file) = file {
            if !safe_id(&file) {
                return Err(GatewayError::NoSuchObject {
                    what: "File",
                    id: file,
                });
            }
            self.check_owner(ObjectKind::File, "File", &file).await?;
        }
        let path = endpoint.as_deref().unwrap_or("/v1/batches");
        Ok(self.client.route(path, "", hint)?.name.clone())
    }

    /// A create answer: the new batch is recorded as the caller's (for pricing too).
    async fn created_batch(
        &self,
        status: StatusCode,
        headers: HeaderMap,
        answer: Bytes,
    ) -> Result<Response<RespBody>, GatewayError> {
        if !status.is_success() {
            return Ok(self.answer(status, headers, answer));
        }
        let mut batch = parse(&answer)?;
        let id = id_of(&batch)?;
        self.own_object(ObjectKind::Batch, &id, &self.ctx.route)
            .await?;
        self.saw_batch(&mut batch).await?;
        Ok(self.answer(status, headers, Bytes::from(batch.to_string())))
    }

    /// A batch object of the caller's on its way to the caller: its result files become
    /// the caller's, an ended batch is priced soon, Anthropic's `results_url` points here.
    async fn saw_batch(&self, batch: &mut Value) -> Result<(), GatewayError> {
        for field in ["output_file_id", "error_file_id"] {
            if let Some(file) = batch
                .get(field)
                .and_then(Value::as_str)
                .filter(|f| safe_id(f))
            {
                self.own_object(ObjectKind::File, file, &self.ctx.route)
                    .await?;
            }
        }
        let Some(id) = batch.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return Ok(());
        };
        if let Some(url) = batch.get_mut("results_url").filter(|u| u.is_string()) {
            *url = Value::String(format!("/v1/messages/batches/{id}/results"));
        }
        if ended(batch) {
            // Priced by the engine's next pass over batches due for a check (at most a
            // poll interval away); this only starts one now if none is running.
            self.engine.price_explicit_soon();
        }
        Ok(())
    }

    /// A list answer with only the caller's objects: upstream pages are read (the largest
    /// the API allows, at most [`MAX_LIST_PAGES`]) until the caller's `limit` is filled or
    /// the provider has no more.
    async fn list(
        &self,
        kind: ObjectKind,
        page: u32,
        cursor: &str,
    ) -> Result<Response<RespBody>, GatewayError> {
        let mut params: Vec<(String, String)> = self
            .parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let get = |params: &[(String, String)], k: &str| {
            params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let want = get(&params, "limit")
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(20)
            .clamp(1, page) as usize;
        let backwards = get(&params, "before_id").is_some();
        set(&mut params, "limit", page.to_string());
        let mut data = Vec::new();
        let mut top = serde_json::Map::new();
        let mut more = false;
        let mut last_status = (StatusCode::OK, HeaderMap::new());
        for _ in 0..MAX_LIST_PAGES {
            let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let path = format!("{}?{}", self.parts.uri.path(), query.join("&"));
            let (status, headers, answer) = self.send_to(Method::GET, &path, empty_body()).await?;
            if !status.is_success() {
                return Ok(self.answer(status, headers, answer));
            }
            last_status = (status, headers);
            let Value::Object(mut listing) = parse(&answer)? else {
                return Err(GatewayError::UpstreamBadResponse {
                    provider: self.provider.as_str(),
                    reason: "a list answer is not an object".into(),
                });
            };
            let items = match listing.remove("data") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            more = listing.get("has_more").and_then(Value::as_bool) == Some(true);
            let last = items
                .last()
                .and_then(|i| i.get("id"))
                .and_then(Value::as_str)
                .filter(|id| safe_id(id))
                .map(str::to_owned);
            let ids: Vec<String> = items
                .iter()
                .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect();
            let mine: HashSet<String> = self
                .store()
                .owned_among(self.provider, kind, &self.client.name, &ids)
                .await?
                .into_iter()
                .collect();
            for mut item in items {
                let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
                if mine.contains(id) {
                    if kind == ObjectKind::Batch {
                        self.saw_batch(&mut item).await?;
                    }
                    data.push(item);
                }
            }
            top = listing;
            match last {
                Some(last) if more && !backwards && data.len() < want => {
                    set(&mut params, cursor, last)
                }
                _ => break,
            }
        }
        let more = more || data.len() > want;
        data.truncate(want);
        let id_of = |i: Option<&Value>| i.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
        top.insert("first_id".into(), id_of(data.first()));
        top.insert("last_id".into(), id_of(data.last()));
        top.insert("has_more".into(), Value::Bool(more));
        top.insert("data".into(), Value::Array(data));
        let (status, headers) = last_status;
        Ok(self.answer(status, headers, Bytes::from(Value::Object(top).to_string())))
    }

    /// Sends the caller's request (its method and path) and reads the JSON answer whole.
    async fn send_read(
        &self,
        body: crate::upstream::ReqBody,
    ) -> Result<(StatusCode, HeaderMap, Bytes), GatewayError> {
        let path = self
            .parts
            .uri
            .path_and_query()
            .map_or(self.parts.uri.path(), |pq| pq.as_str());
        self.send_to(self.parts.method.clone(), path, body).await
    }

    async fn send_to(
        &self,
        method: Method,
        path: &str,
        body: crate::upstream::ReqBody,
    ) -> Result<(StatusCode, HeaderMap, Bytes), GatewayError> {
        let resp = self.send(method, path, body).await?;
        let (head, body) = resp.into_parts();
        let read = Limited::new(body, MAX_JSON_ANSWER_BYTES).collect().await;
        let answer = read.map_err(|e| GatewayError::UpstreamBadResponse {
            provider: self.provider.as_str(),
            reason: format!("the answer could not be read: {e}"),
        })?;
        Ok((head.status, head.headers, answer.to_bytes()))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: crate::upstream::ReqBody,
    ) -> Result<http::Response<Incoming>, GatewayError> {
        let to = forward::Pass {
            provider: self.provider,
            method,
            path_and_query: path.strip_prefix("/v1").unwrap_or_default(),
        };
        let billing = self.client.billing(self.provider);
        let sent = Instant::now();
        let resp = self
            .app
            .forwarder
            .pass(to, &self.parts.headers, billing, body)
            .await
            .inspect_err(|e| {
                if e.source() != crate::error::Source::Downstream {
                    respond::record_failure(self.app, &self.ctx, e);
                }
            })?;
        self.app
            .metrics()
            .upstream_duration
            .with_label_values(&[self.provider.as_str(), Tier::Interactive.as_str()])
            .observe(sent.elapsed().as_secs_f64());
        Ok(resp)
    }

    /// A download (file content, batch results): relayed as it streams.
    async fn stream(&self) -> Result<Response<RespBody>, GatewayError> {
        let path = self
            .parts
            .uri
            .path_and_query()
            .map_or(self.parts.uri.path(), |pq| pq.as_str());
        let resp = self
            .send(self.parts.method.clone(), path, empty_body())
            .await?;
        Ok(passthrough::relay_unpriced(
            self.app.clone(),
            &self.ctx,
            resp,
        ))
    }

    /// An answer read whole, relayed with its status and headers, counted.
    fn answer(&self, status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<RespBody> {
        self.app
            .accountant
            .record(&self.ctx.answer(status.as_u16(), None));
        let json = is_json(&headers);
        let mut r = full(status, "application/json", body);
        let mut headers = forward::relay_headers(headers);
        if !json {
            headers.remove(header::CONTENT_TYPE);
        }
        for (name, value) in headers.iter() {
            r.headers_mut().insert(name, value.clone());
        }
        r.headers_mut().insert(
            X_SLUICE_TIER,
            HeaderValue::from_static(Tier::Interactive.as_str()),
        );
        r
    }
}

fn set(params: &mut Vec<(String, String)>, key: &str, value: String) {
    match params.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => params.push((key.to_owned(), value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_operations_and_nothing_else() {
        let get = Method::GET;
        let post = Method::POST;
        let delete = Method::DELETE;
        assert_eq!(op(&post, "/v1/files").unwrap(), Op::FileUpload);
        assert_eq!(
            op(&get, "/v1/files/file-1/content").unwrap(),
            Op::FileContent("file-1")
        );
        assert_eq!(
            op(&delete, "/v1/files/file-1").unwrap(),
            Op::FileDelete("file-1")
        );
        assert_eq!(
            op(&post, "/v1/batches/b_1/cancel").unwrap(),
            Op::BatchCancel("b_1")
        );
        assert_eq!(
            op(&get, "/v1/messages/batches/mb_1/results").unwrap(),
            Op::MessageBatchResults("mb_1")
        );
        assert_eq!(
            op(&delete, "/v1/messages/batches/mb_1").unwrap(),
            Op::MessageBatchDelete("mb_1")
        );
        for (m, p, status) in [
            (&delete, "/v1/files", 405),
            (&get, "/v1/batches/b_1/cancel", 405),
            (&post, "/v1/messages/batches/mb_1/results", 405),
            (&get, "/v1/files/file-1/other", 404),
            (&get, "/v1/files/..", 404),
            (&get, "/v1/files/a%2Fb", 404),
            (&get, "/v1/batches/", 404),
            (&get, "/v1/batchesx", 404),
        ] {
            assert_eq!(
                op(m, p).map_err(|e| e.status().as_u16()),
                Err(status),
                "{m} {p}"
            );
        }
        assert!(owns("/v1/files") && owns("/v1/messages/batches/x") && owns("/v1/batches/x"));
        assert!(!owns("/v1/filesystem") && !owns("/v1/messages") && !owns("/v1/batchesx"));
    }

    #[test]
    fn ended_batches_are_recognised_in_both_shapes() {
        assert!(ended(&serde_json::json!({"status": "completed"})));
        assert!(ended(&serde_json::json!({"status": "cancelled"})));
        assert!(!ended(&serde_json::json!({"status": "cancelling"})));
        assert!(ended(&serde_json::json!({"processing_status": "ended"})));
        assert!(!ended(
            &serde_json::json!({"processing_status": "canceling"})
        ));
    }
}
