//! The request path: identify → triage → (response cache | forward) → respond → account.
//!
//! `App` holds one handle per stage; `handle` is the one entry point the server calls and
//! the one exit where gateway errors become OpenAI-shaped responses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::Incoming;

use crate::account::{Accountant, Answer};
use crate::batch::client::BatchClient;
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
mod ingress;
mod translated;

use admin::{jobs, models, ready, turnaround};
use defer::defer;
use ingress::gateway_key;
use translated::translated;

pub type RespBody = UnsyncBoxBody<Bytes, BoxError>;

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
        policies: PolicySet,
        prices: PriceTable,
        metrics: Arc<Metrics>,
        store: Option<Arc<dyn Store>>,
    ) -> Result<App, String> {
        let upstream = crate::upstream::Upstream::new(&config.upstream);
        let forwarder = Arc::new(Forwarder::new(upstream, &config.providers)?);
        let prices = Arc::new(prices);
        let mut accountant = Accountant::new(prices.clone(), policies.models.clone(), metrics);
        if let Some(store) = &store {
            accountant = accountant.with_ledger(store.clone());
        }
        let accountant = Arc::new(accountant);
        let policies = Arc::new(policies);
        let engine = store.map(|store| {
            Arc::new(Engine::new(
                store,
                BatchClient::new(&config.upstream, &config.providers),
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
            configured: config
                .providers
                .iter()
                .filter(|p| p.api_key.is_some())
                .map(|p| p.provider)
                .collect(),
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

/// The same, in Anthropic's shape (`/v1/messages`).
fn anthropic_error_response(e: &GatewayError) -> Response<RespBody> {
    let r = error_response(e);
    full(r.status(), "application/json", e.to_anthropic_json())
}

/// Entry point for every request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let endpoint = Endpoint::from_path(path);
    let mut unread = Some(body);
    let mut known = Known::default();
    let result = match (&parts.method, path, endpoint) {
        (&Method::POST, _, Some(endpoint)) => {
            proxy(&app, endpoint, &parts, &mut unread, &mut known).await
        }
        (&Method::GET, "/healthz", _) => Ok(full(StatusCode::OK, "text/plain", "ok\n")),
        (&Method::GET, "/readyz", _) => ready(&app).await,
        (&Method::GET, "/metrics", _) => Ok(full(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            app.metrics().render(),
        )),
        (&Method::GET, "/v1/models", _) => models(&app, &parts, None),
        (&Method::GET, "/sluice/v1/turnaround", _) => turnaround(&app, &parts).await,
        (&Method::GET, p, _) if p.starts_with("/sluice/v1/jobs/") => jobs(&app, &parts).await,
        (&Method::GET, p, _) if p.starts_with("/v1/models/") => {
            let id = p["/v1/models/".len()..].to_owned();
            models(&app, &parts, Some(&id))
        }
        (_, p, e) if e.is_some() || is_get_route(p) => Err(GatewayError::MethodNotAllowed {
            method: parts.method.to_string(),
            path: p.to_owned(),
        }),
        _ => Err(GatewayError::NotFound {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
        }),
    };
    let response = match (result, endpoint) {
        (Ok(r), _) => return r,
        (Err(e), endpoint) => {
            if e.source() == crate::error::Source::Downstream {
                count_rejected(&app, &known, e.status());
            }
            match endpoint {
                Some(Endpoint::Messages) => anthropic_error_response(&e),
                _ => error_response(&e),
            }
        }
    };
    match unread {
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

/// What the request path knows once the client is identified and the request triaged.
struct Ctx {
    client: Arc<str>,
    route: Arc<str>,
    provider: Provider,
    facts: RequestFacts,
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
}

async fn read_body(app: &App, body: Incoming, headers: &HeaderMap) -> Result<Bytes, GatewayError> {
    let limit = app.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(GatewayError::BodyTooLarge { limit });
    }
    match tokio::time::timeout(app.body_read_timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(GatewayError::BodyTimeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::BodyTooLarge { limit })
        }
        Ok(Err(e)) => Err(GatewayError::invalid(
            format!("could not read the request body: {e}"),
            None,
        )),
    }
}

async fn proxy(
    app: &Arc<App>,
    endpoint: Endpoint,
    parts: &http::request::Parts,
    unread: &mut Option<Incoming>,
    known: &mut Known,
) -> Result<Response<RespBody>, GatewayError> {
    let arrived = Instant::now();
    let client: &ClientPolicy = ingress::identify(app, &parts.headers)?;
    known.client = Some(client.name.clone());
    let admitted = ingress::admit(&parts.headers)?;
    let Some(body) = unread.take() else {
        return Err(GatewayError::invalid(
            "the request body was already read",
            None,
        ));
    };
    let body = read_body(app, body, &parts.headers).await?;
    let received = Instant::now();
    let facts = inspect::inspect(endpoint, &body)?;
    known.model = Some(facts.model.clone());
    let route: &RoutePolicy = client.route(endpoint.path(), &facts.model, admitted.route_hint)?;
    known.route = Some(route.name.clone());
    let sla = client.effective_sla(route, admitted.sla);
    // The native Messages route always speaks to Anthropic.
    let provider = match endpoint {
        Endpoint::Messages => Provider::Anthropic,
        _ => app.policies.models.provider_for(&facts.model),
    };
    known.provider = Some(provider);
    let flex_capable = !facts.has_service_tier
        && app
            .prices
            .get(&facts.model)
            .is_some_and(|(_, p)| p.has_flex());
    let decision = triage::triage(
        route,
        &Facts {
            endpoint,
            stream: facts.stream,
            flex_capable,
        },
        sla,
        &capabilities(app, client, provider, endpoint, &facts),
    );

    let cache_key = decision
        .response_cache_ttl
        .and_then(|_| ResponseCache::key(&client.name, &route.name, endpoint.path(), &body));
    if let Some(key) = &cache_key {
        if let Some(hit) = app.response_cache.get(key).await {
            return Ok(answer_from_cache(
                app,
                client,
                route,
                provider,
                &facts.model,
                &hit,
            ));
        }
    }

    if endpoint == Endpoint::ChatCompletions && provider == Provider::Anthropic {
        let ctx = Ctx {
            client: client.name.clone(),
            route: route.name.clone(),
            provider,
            tier: Tier::Interactive,
            facts,
            sla,
            arrived,
        };
        return translated(app, ctx, &parts.headers, &body, received, route.cache_hints).await;
    }

    // Only fields the destination is known to accept (`Accepts`).
    let accepts = app.accepts(provider);
    let additions = Additions {
        prompt_cache_key: match (
            route.cache_hints && accepts.prompt_cache_key,
            facts.has_cache_key,
            &facts.prefix_hash,
        ) {
            (true, false, Some(h))
                if !matches!(endpoint, Endpoint::Embeddings | Endpoint::Messages) =>
            {
                Some(inspect::cache_key(&client.name, &route.name, *h))
            }
            _ => None,
        },
        include_usage: accepts.stream_options
            && facts.stream
            && endpoint.takes_stream_options()
            && !facts.client_wants_usage,
        flex: false,
    };
    let mut upstream_body = inspect::rewrite(&body, &facts, &additions);
    if endpoint == Endpoint::Messages && route.cache_hints {
        // Anthropic caches only at explicit breakpoints; batches can run far apart, so they
        // get the 1-hour cache.
        let ttl = if decision.tier == Tier::Batch {
            "1h"
        } else {
            "5m"
        };
        if let Some(b) =
            crate::anthropic::cache::with_breakpoints(&upstream_body, &facts.model, ttl)
        {
            upstream_body = b;
        }
    }
    if decision.tier == Tier::Batch {
        if let Some(engine) = &app.engine {
            return defer(
                app,
                engine,
                &admitted,
                client,
                route,
                provider,
                endpoint,
                &facts,
                sla,
                upstream_body,
            )
            .await;
        }
    }
    let mut ctx = Ctx {
        client: client.name.clone(),
        route: route.name.clone(),
        provider,
        tier: decision.tier,
        facts,
        sla,
        arrived,
    };

    let sent = Instant::now();
    let resp = if ctx.tier == Tier::Flex {
        let flex_body = inspect::rewrite(
            &body,
            &ctx.facts,
            &Additions {
                flex: true,
                ..additions.clone()
            },
        );
        send_flex(
            app,
            &mut ctx,
            &parts.headers,
            client.billing(provider),
            endpoint,
            flex_body,
            upstream_body,
            sla,
        )
        .await
    } else {
        app.forwarder
            .send(
                provider,
                endpoint,
                &ctx.facts.model,
                &parts.headers,
                client.billing(provider),
                upstream_body,
            )
            .await
    };
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            record_failure(app, &ctx, &e);
            return Err(e);
        }
    };
    let (up_parts, up_body) = resp.into_parts();

    if ctx.facts.stream
        && up_parts.status.is_success()
        && forward::is_event_stream(&up_parts.headers)
    {
        let upstream_head = sent.elapsed();
        let mut out = Response::new(RespBody::default());
        *out.status_mut() = up_parts.status;
        forward::relay_headers(&up_parts.headers, out.headers_mut());
        out.headers_mut()
            .insert(X_SLUICE_TIER, HeaderValue::from_static(ctx.tier.as_str()));
        let accountant = app.accountant.clone();
        let status = up_parts.status.as_u16();
        observe_latency(app, &ctx, upstream_head, received.elapsed());
        let body = MeteredSse::new(up_body, additions.include_usage, move |end: StreamEnd| {
            // A stream is answered when it ends.
            ctx.check_deadline(accountant.metrics());
            if end.usage.is_none() {
                tracing::debug!(
                    completed = end.completed,
                    "stream ended without a usage chunk"
                );
            }
            accountant.record(&Answer {
                route: &ctx.route,
                client: &ctx.client,
                provider: ctx.provider,
                model: &ctx.facts.model,
                tier: ctx.tier,
                status,
                usage: end.usage,
            });
        });
        *out.body_mut() = body.boxed_unsync();
        return Ok(out);
    }

    let answer = forward::read_answer(provider, up_body, app.forwarder.response_timeout()).await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            record_failure(app, &ctx, &e);
            return Err(e);
        }
    };
    let upstream_time = sent.elapsed();
    ctx.check_deadline(app.metrics());
    let usage = if up_parts.status.is_success() {
        crate::usage::from_json(&answer)
    } else {
        None
    };
    let priced = app.accountant.record(&Answer {
        route: &ctx.route,
        client: &ctx.client,
        provider,
        model: &ctx.facts.model,
        tier: ctx.tier,
        status: up_parts.status.as_u16(),
        usage,
    });
    if let (Some(key), Some(ttl), true) = (
        cache_key,
        decision.response_cache_ttl,
        up_parts.status.is_success(),
    ) {
        app.response_cache
            .put(
                key,
                CachedAnswer {
                    status: up_parts.status.as_u16(),
                    content_type: up_parts.headers.get(header::CONTENT_TYPE).cloned(),
                    body: answer.clone(),
                    usage,
                    ttl,
                },
            )
            .await;
    }
    let mut out = Response::new(
        Full::new(answer)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *out.status_mut() = up_parts.status;
    forward::relay_headers(&up_parts.headers, out.headers_mut());
    price_headers(out.headers_mut(), ctx.tier, priced.as_ref());
    observe_latency(app, &ctx, upstream_time, received.elapsed());
    Ok(out)
}

fn observe_latency(app: &App, ctx: &Ctx, upstream: Duration, total: Duration) {
    let m = app.metrics();
    m.upstream_duration
        .with_label_values(&[ctx.provider.as_str(), ctx.tier.as_str()])
        .observe(upstream.as_secs_f64());
    if ctx.tier == Tier::Interactive {
        m.overhead
            .with_label_values(&[&ctx.route])
            .observe(total.saturating_sub(upstream).as_secs_f64());
    }
}

/// Counts a request the provider never answered (502/504) under its route and client.
fn record_failure(app: &App, ctx: &Ctx, e: &GatewayError) {
    app.accountant.record(&Answer {
        route: &ctx.route,
        client: &ctx.client,
        provider: ctx.provider,
        model: &ctx.facts.model,
        tier: ctx.tier,
        status: e.status().as_u16(),
        usage: None,
    });
}

fn answer_from_cache(
    app: &App,
    client: &ClientPolicy,
    route: &RoutePolicy,
    provider: Provider,
    model: &str,
    hit: &CachedAnswer,
) -> Response<RespBody> {
    let priced = app.accountant.record(&Answer {
        route: &route.name,
        client: &client.name,
        provider,
        model,
        tier: Tier::ResponseCache,
        status: hit.status,
        usage: hit.usage,
    });
    let mut out = Response::new(
        Full::new(hit.body.clone())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *out.status_mut() = StatusCode::from_u16(hit.status).unwrap_or(StatusCode::OK);
    if let Some(ct) = &hit.content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    price_headers(out.headers_mut(), Tier::ResponseCache, priced.as_ref());
    out
}

pub fn usd(v: f64) -> HeaderValue {
    let s = format!("{v:.10}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn price_headers(h: &mut HeaderMap, tier: Tier, priced: Option<&Priced>) {
    h.insert(X_SLUICE_TIER, HeaderValue::from_static(tier.as_str()));
    if let Some(p) = priced {
        h.insert(X_SLUICE_COST, usd(p.cost_usd));
        h.insert(X_SLUICE_BASELINE, usd(p.baseline_usd));
    }
}

/// What the gateway can do for this request right now.
fn capabilities(
    app: &App,
    client: &ClientPolicy,
    provider: Provider,
    endpoint: Endpoint,
    facts: &RequestFacts,
) -> Capabilities {
    match &app.engine {
        Some(e) => Capabilities {
            // A client-chosen service tier is honoured synchronously, never batched.
            // OpenAI batches chat, completions and embeddings; Anthropic batches native
            // Messages requests (translated chat requests stay synchronous).
            // A client that pays from its own OpenAI organization or project is not mixed
            // into shared batches, which carry the gateway's (left for the provider seam).
            batch: e.batches(provider)
                && !facts.has_service_tier
                && client.billing(provider).headers.is_empty()
                && match provider {
                    Provider::Anthropic => endpoint == Endpoint::Messages,
                    _ => !matches!(endpoint, Endpoint::Responses | Endpoint::Messages),
                },
            flex: provider == Provider::OpenAi && app.accepts(provider).service_tier,
            batch_turnaround_p95: e.turnaround_p95(provider, &facts.model),
            batch_lead: e.config().batch_lead(),
            interactive_below: app.interactive_below,
        },
        None => Capabilities {
            flex: provider == Provider::OpenAi && app.accepts(provider).service_tier,
            interactive_below: app.interactive_below,
            ..Capabilities::INTERACTIVE_ONLY
        },
    }
}

/// A flex call with a default-tier call made in time: when flex answers 429 (resource
/// unavailable) or has not answered within its share of the deadline.
#[allow(clippy::too_many_arguments)] // the per-request context of issue 9 will carry these
async fn send_flex(
    app: &App,
    ctx: &mut Ctx,
    headers: &HeaderMap,
    billing: &forward::Billing,
    endpoint: Endpoint,
    flex_body: Bytes,
    default_body: Bytes,
    sla: Sla,
) -> Result<http::Response<Incoming>, GatewayError> {
    let deadline = sla.deadline();
    // Leave the default-tier call its lead time; a short SLA splits the time in half.
    let budget = if deadline > app.fallback_lead * 2 {
        deadline - app.fallback_lead
    } else {
        deadline / 2
    };
    let flex = tokio::time::timeout(
        budget,
        app.forwarder.send(
            ctx.provider,
            endpoint,
            &ctx.facts.model,
            headers,
            billing,
            flex_body,
        ),
    )
    .await;
    let reason = match flex {
        Ok(Ok(r)) if r.status() != StatusCode::TOO_MANY_REQUESTS => return Ok(r),
        Ok(Ok(_)) => "flex_unavailable",
        Ok(Err(e)) => return Err(e),
        Err(_) => "flex_timeout",
    };
    app.metrics()
        .fallbacks
        .with_label_values(&[&ctx.route, Tier::Flex.as_str(), reason])
        .inc();
    ctx.tier = Tier::Interactive;
    app.forwarder
        .send(
            ctx.provider,
            endpoint,
            &ctx.facts.model,
            headers,
            billing,
            default_body,
        )
        .await
}
