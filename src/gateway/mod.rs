//! The request path: identify → triage → (response cache | forward) → respond → account.
//!
//! `App` holds one handle per stage; `handle` is the one entry point the server calls and
//! the one exit where gateway errors become OpenAI-shaped responses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::account::{Accountant, Answer};
use crate::batch::engine::{Engine, EngineConfig};
use crate::config::Config;
use crate::deliver;
use crate::error::GatewayError;
use crate::forward::{self, Forwarder, X_SLUICE_BASELINE, X_SLUICE_COST, X_SLUICE_TIER};
use crate::inspect::{self, Additions, RequestFacts};
use crate::metrics::Metrics;
use crate::policy::{ClientPolicy, PolicySet, RoutePolicy};
use crate::pricing::{PriceTable, Priced};
use crate::relay::{BoxError, MeteredSse, StreamEnd};
use crate::response_cache::{CachedAnswer, ResponseCache};
use crate::sla::Sla;
use crate::store::{Enqueued, NewJob, Store};
use crate::triage::{self, Capabilities, Facts};
use crate::types::{Endpoint, Provider, Tier};

mod admin;
mod defer;
mod execute;
mod gemini_path;
mod ingress;
mod owned;
mod passthrough;
mod plan;
mod respond;

pub use crate::forward::usd;
use admin::{jobs, models, ready, turnaround};
use defer::defer;
use ingress::{Call, gateway_key};

pub use crate::relay::RespBody;

/// Default bound of the response cache, in bytes of cached bodies.
pub const RESPONSE_CACHE_BYTES: u64 = 64 * 1024 * 1024;

pub struct App {
    policies: Arc<PolicySet>,
    forwarder: Arc<Forwarder>,
    /// The deferred tiers; `None` without a store (interactive and flex only).
    engine: Option<Arc<Engine>>,
    keep_alive: Duration,
    fallback_lead: Duration,
    interactive_below: Duration,
    accountant: Arc<Accountant>,
    response_cache: ResponseCache,
    prices: Arc<PriceTable>,
    configured: Vec<Provider>,
    /// Per provider (`Provider::ALL` order): the fields Sluice may add to its requests.
    accepts: Vec<crate::config::Accepts>,
    max_body_bytes: usize,
    body_read_timeout: Duration,
}

impl App {
    pub fn new(
        config: &Config,
        mut policies: PolicySet,
        prices: PriceTable,
        metrics: Arc<Metrics>,
        store: Option<Arc<dyn Store>>,
    ) -> Result<App, String> {
        let upstream = crate::upstream::Upstream::new(&config.upstream);
        let vertex = config.providers.iter().find_map(|p| p.vertex.as_ref());
        // One token source for the service account: batch jobs and interactive calls.
        let vertex_tokens = vertex
            .map(|v| crate::providers::vertex::tokens(&config.upstream, v))
            .transpose()?;
        let configured: Vec<Provider> = config
            .providers
            .iter()
            .filter(|p| p.api_key.is_some() || p.vertex.is_some())
            .map(|p| p.provider)
            .collect();
        // With Vertex AI and no Gemini API key, `gemini-*` goes to Vertex by default.
        policies
            .models
            .default_gemini_to(crate::providers::gemini_default(&configured));
        let forwarder = Arc::new(Forwarder::with_vertex(
            upstream,
            &config.providers,
            vertex_tokens.clone(),
        )?);
        let prices = Arc::new(prices);
        let mut accountant = Accountant::new(prices.clone(), policies.models.clone(), metrics);
        if let Some(store) = &store {
            accountant = accountant.with_ledger(store.clone());
        }
        let accountant = Arc::new(accountant);
        let policies = Arc::new(policies);
        let mut adapters = Vec::new();
        for p in &config.providers {
            if let Some(a) =
                crate::providers::Adapter::new(&config.upstream, p, vertex_tokens.as_ref())?
            {
                adapters.push((p.provider, a));
            }
        }
        let engine = store.map(|store| {
            Arc::new(Engine::new(
                store,
                adapters,
                forwarder.clone(),
                accountant.clone(),
                policies.clone(),
                EngineConfig::from_config(&config.batch),
            ))
        });
        Ok(App {
            policies,
            forwarder,
            engine,
            keep_alive: config.batch.keep_alive,
            fallback_lead: config.batch.fallback_lead,
            interactive_below: config.batch.interactive_below,
            accountant,
            response_cache: ResponseCache::new(RESPONSE_CACHE_BYTES),
            prices,
            configured,
            accepts: config.providers.iter().map(|p| p.accepts).collect(),
            max_body_bytes: config.max_body_bytes,
            body_read_timeout: config.body_read_timeout,
        })
    }

    pub fn metrics(&self) -> &Metrics {
        self.accountant.metrics()
    }

    /// The fields Sluice may add to a request for `p`.
    fn accepts(&self, p: Provider) -> crate::config::Accepts {
        self.accepts
            .get(p as usize)
            .copied()
            .unwrap_or(crate::config::Accepts::NONE)
    }

    /// The deferred-tier engine, whose loop the caller runs (`Engine::run`).
    pub fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.clone()
    }
}

fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<RespBody> {
    let mut r = Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// The single place a gateway error becomes a response.
pub fn error_response(e: &GatewayError) -> Response<RespBody> {
    match e.source() {
        crate::error::Source::Downstream => tracing::debug!(error = %e, "request rejected"),
        _ => tracing::warn!(error = %e, "request failed"),
    }
    full(e.status(), "application/json", e.to_openai_json())
}

/// The API whose error shape a request for `path` gets, judged from the path alone as
/// [`handle`] does: Gemini-native paths Google's, `/v1/messages` Anthropic's, the rest
/// OpenAI's. Also for errors answered before routing (URI too long, headers too large).
pub fn api_for_path(method: &str, path: &str) -> crate::types::Api {
    match gemini_path::parse(method, path, None) {
        Some(_) => crate::types::Api::Gemini,
        None => {
            Endpoint::from_path(path).map_or_else(|| passthrough::api_for_path(path), Endpoint::api)
        }
    }
}

/// The same, in the shape of the API the caller spoke.
pub fn api_error_response(e: &GatewayError, api: crate::types::Api) -> Response<RespBody> {
    let r = error_response(e);
    full(r.status(), "application/json", e.to_json(api))
}

/// What the request path answers with: a response now, or a held job, awaited only once
/// the request's own state is gone (see [`deliver::Held`]), with the API the caller spoke
/// (the shape of an error).
enum Reply {
    Now(Response<RespBody>),
    Held(deliver::Held, crate::types::Api),
}

/// Entry point for every request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<RespBody> {
    // Boxed, the request path's state is freed when it returns, before a hold that may
    // last hours; inline, its ~4.5 KiB (and the request it keeps) would stay in every
    // held request's task.
    match Box::pin(serve(app, req)).await {
        Reply::Now(response) => response,
        Reply::Held(held, api) => {
            let answer = held.answer().await;
            answer.unwrap_or_else(|e| api_error_response(&e, api))
        }
    }
}

async fn serve(app: Arc<App>, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    // Gemini-native paths name their model; every other API endpoint is a fixed path.
    let gemini = gemini_path::parse(parts.method.as_str(), path, parts.uri.query());
    let endpoint = match &gemini {
        Some(_) => Some(Endpoint::GenerateContent),
        None => Endpoint::from_path(path),
    };
    let mut unread = Some(body);
    let mut known = Known::default();
    let result = match gemini {
        Some(Err(e)) => Err(e),
        Some(Ok(t)) if parts.method == Method::POST => {
            let endpoint = Endpoint::GenerateContent;
            proxy(&app, endpoint, Some(&t), &parts, &mut unread, &mut known).await
        }
        Some(Ok(_)) => Err(GatewayError::MethodNotAllowed {
            method: parts.method.to_string(),
            path: path.to_owned(),
        }),
        None => route(&app, &parts, endpoint, &mut unread, &mut known).await,
    };
    let response = match (result, endpoint) {
        (Ok(reply), _) => return reply,
        (Err(e), endpoint) => {
            if e.source() == crate::error::Source::Downstream {
                count_rejected(&app, &known, e.status());
            }
            match endpoint {
                Some(endpoint) => api_error_response(&e, endpoint.api()),
                None => api_error_response(&e, passthrough::api(path, &parts.headers)),
            }
        }
    };
    Reply::Now(match unread {
        None => response,
        Some(body) => match ingress::drain(body).await {
            None => response,
            Some(request) => response.map(|response| {
                ingress::HoldingRequest {
                    response,
                    _request: Some(request),
                }
                .boxed_unsync()
            }),
        },
    })
}

/// The fixed-path routes.
async fn route(
    app: &Arc<App>,
    parts: &http::request::Parts,
    endpoint: Option<Endpoint>,
    unread: &mut Option<Incoming>,
    known: &mut Known,
) -> Result<Reply, GatewayError> {
    match (&parts.method, endpoint) {
        (&Method::POST, Some(endpoint)) => proxy(app, endpoint, None, parts, unread, known).await,
        _ => other(app, parts, endpoint, unread, known)
            .await
            .map(Reply::Now),
    }
}

/// Every route but the API endpoints' POSTs: probes, metrics, jobs, the explicit Batch
/// APIs, pass-through.
async fn other(
    app: &Arc<App>,
    parts: &http::request::Parts,
    endpoint: Option<Endpoint>,
    unread: &mut Option<Incoming>,
    known: &mut Known,
) -> Result<Response<RespBody>, GatewayError> {
    match (&parts.method, parts.uri.path(), endpoint) {
        (&Method::GET, "/healthz", _) => Ok(full(StatusCode::OK, "text/plain", "ok\n")),
        (&Method::GET, "/readyz", _) => ready(app).await,
        (&Method::GET, "/metrics", _) => Ok(full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            app.metrics().render(),
        )),
        (&Method::GET, "/v1/models", _) => models(app, parts, None),
        (&Method::GET, "/sluice/v1/turnaround", _) => turnaround(app, parts).await,
        (&Method::GET, p, _) if p.starts_with("/sluice/v1/jobs/") => jobs(app, parts).await,
        (&Method::GET, p, _) if p.starts_with("/v1/models/") => {
            passthrough::model(app, parts, unread, known).await
        }
        (_, p, None) if owned::owns(p) => owned::serve(app, parts, unread, known).await,
        (_, p, None) if passthrough::owns(p) => passthrough::serve(app, parts, unread, known).await,
        (_, p, e) if e.is_some() || is_get_route(p) => Err(GatewayError::MethodNotAllowed {
            method: parts.method.to_string(),
            path: p.to_owned(),
        }),
        _ => Err(GatewayError::NotFound {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
        }),
    }
}

/// What the request path learnt before it failed: the labels of a rejected request.
#[derive(Default)]
struct Known {
    client: Option<Arc<str>>,
    route: Option<Arc<str>>,
    provider: Option<Provider>,
    model: Option<String>,
}

/// Label values of a rejected request that got no further than its head: closed sets.
const UNKNOWN_CLIENT: &str = "unknown";
const NO_ROUTE: &str = "none";
const NO_PROVIDER: &str = "none";
const NO_TIER: &str = "none";

/// Counts a request the gateway itself refused (400, 401, 404, 413, 422, ...), under what
/// was known when it was refused.
fn count_rejected(app: &App, known: &Known, status: StatusCode) {
    let model = known
        .model
        .as_deref()
        .map_or(crate::account::OTHER_MODEL, |m| {
            app.accountant.model_label(m)
        });
    app.metrics()
        .requests
        .with_label_values(&[
            known.route.as_deref().unwrap_or(NO_ROUTE),
            known.client.as_deref().unwrap_or(UNKNOWN_CLIENT),
            known.provider.map_or(NO_PROVIDER, Provider::as_str),
            model,
            NO_TIER,
            status.as_str(),
        ])
        .inc();
}

fn is_get_route(p: &str) -> bool {
    matches!(
        p,
        "/healthz" | "/readyz" | "/metrics" | "/v1/models" | "/sluice/v1/turnaround"
    ) || p.starts_with("/v1/models/")
        || p.starts_with("/sluice/v1/jobs/")
}

/// What accounting needs of a request being served: owned, so a stream's end can use it.
#[derive(Clone)]
struct Ctx {
    client: Arc<str>,
    route: Arc<str>,
    provider: Provider,
    model: String,
    tier: Tier,
    /// The caller's SLA and when the request arrived: an answer later is a violation.
    sla: Sla,
    arrived: Instant,
}

impl Ctx {
    /// Counts an SLA violation when the answer (now) is later than the caller's deadline,
    /// whichever tier served it.
    fn check_deadline(&self, metrics: &Metrics) {
        if !self.sla.is_interactive() && self.arrived.elapsed() > self.sla.deadline() {
            metrics
                .sla_violations
                .with_label_values(&[&self.route])
                .inc();
        }
    }

    fn answer(&self, status: u16, usage: Option<crate::types::Usage>) -> Answer<'_> {
        Answer {
            route: &self.route,
            client: &self.client,
            provider: self.provider,
            model: &self.model,
            tier: self.tier,
            status,
            usage,
        }
    }
}

/// The request pipeline: ingress → plan (triage) → execute → respond.
async fn proxy(
    app: &Arc<App>,
    endpoint: Endpoint,
    gemini: Option<&gemini_path::Target>,
    parts: &http::request::Parts,
    unread: &mut Option<Incoming>,
    known: &mut Known,
) -> Result<Reply, GatewayError> {
    let call = ingress::accept(app, endpoint, gemini, parts, unread, known).await?;
    let plan = plan::plan(app, &call)?;
    execute::execute(app, call, plan).await
}
