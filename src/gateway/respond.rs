//! The one exit of a served request: the provider's answer (or the cached one) turned into
//! the response in the caller's API — relayed headers, `x-sluice-*` price headers — and
//! its single accounting record, made when the answer is complete (for a stream, when it
//! ends).

use super::*;
use crate::forward::usd;
use crate::types::Api;
use plan::{Plan, Translation};

/// An answer from the provider, streamed or whole.
pub(super) async fn upstream(
    app: &App,
    ctx: Ctx,
    call: &Call<'_>,
    plan: Plan,
    resp: http::Response<Incoming>,
    sent: Instant,
) -> Result<Response<RespBody>, GatewayError> {
    let (mut parts, body) = resp.into_parts();
    let streams = plan.translated.map_or(call.facts.stream, |t| t.stream);
    if streams && parts.status.is_success() && forward::is_event_stream(&parts.headers) {
        observe_latency(app, &ctx, sent.elapsed(), call.received.elapsed());
        let shown = shown_tier(call, ctx.tier);
        let api = call.endpoint.api();
        return Ok(stream(app, ctx, api, &plan, shown, parts, body));
    }
    let answer =
        match forward::read_answer(ctx.provider, body, app.forwarder.response_timeout()).await {
            Ok(a) => a,
            Err(e) => {
                record_failure(app, &ctx, &e);
                return Err(e);
            }
        };
    let upstream_time = sent.elapsed();
    ctx.check_deadline(app.metrics());
    // Priced from the provider's own usage (Anthropic's keeps the cache-write split) at
    // the tier it reports (Gemini's also in a header).
    let usage = parts
        .status
        .is_success()
        .then(|| crate::usage::from_json(&answer))
        .flatten()
        .map(|u| with_tier(u, crate::usage::header_tier(&parts.headers)));
    // What the caller gets, translated or as the provider sent it.
    let (body, mut out) = match plan.translated {
        Some(t) => translated_answer(&ctx, &parts, answer, t)?,
        None => {
            let mut out = Response::new(
                Full::new(answer.clone())
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *out.status_mut() = parts.status;
            *out.headers_mut() = forward::relay_headers(std::mem::take(&mut parts.headers));
            (answer, out)
        }
    };
    let priced = app
        .accountant
        .record(&ctx.answer(parts.status.as_u16(), usage));
    if let (Some((key, ttl)), true) = (plan.cache, parts.status.is_success()) {
        let cached = CachedAnswer {
            status: parts.status.as_u16(),
            content_type: out.headers().get(header::CONTENT_TYPE).cloned(),
            body,
            usage,
            ttl,
        };
        app.response_cache.put(key, cached).await;
    }
    price_headers(
        out.headers_mut(),
        shown_tier(call, ctx.tier),
        priced.as_ref(),
    );
    observe_latency(app, &ctx, upstream_time, call.received.elapsed());
    Ok(out)
}

/// A Messages (or Vertex `generateContent`) answer as the chat completion (or OpenAI
/// error) the caller asked for.
fn translated_answer(
    ctx: &Ctx,
    parts: &http::response::Parts,
    answer: Bytes,
    t: Translation,
) -> Result<(Bytes, Response<RespBody>), GatewayError> {
    let status = parts.status.as_u16();
    let body = crate::providers::for_caller(
        ctx.provider,
        Endpoint::ChatCompletions,
        status,
        answer,
        (&ctx.model, t.created),
    )
    .map_err(|reason| GatewayError::UpstreamBadResponse {
        provider: ctx.provider.as_str(),
        reason,
    })?;
    let mut out = if t.synth_stream && parts.status.is_success() {
        // Answered whole, streamed to the caller as the chunks it asked for.
        let events: Vec<u8> = crate::synth::chunks(status, &body, t.include_usage).concat();
        full(parts.status, "text/event-stream", events)
    } else {
        full(parts.status, "application/json", body.clone())
    };
    for name in ["request-id", "retry-after"] {
        if let Some(v) = parts.headers.get(name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    Ok((body, out))
}

/// An SSE stream relayed as it arrives (translated to chat chunks for a Claude request),
/// accounted for when it ends.
fn stream(
    app: &App,
    ctx: Ctx,
    api: Api,
    plan: &Plan,
    tier: Tier,
    parts: http::response::Parts,
    body: Incoming,
) -> Response<RespBody> {
    let accountant = app.accountant.clone();
    let status = parts.status.as_u16();
    let header_tier = crate::usage::header_tier(&parts.headers);
    let on_end = move |end: StreamEnd| {
        ctx.check_deadline(accountant.metrics());
        if end.usage.is_none() {
            tracing::debug!(
                completed = end.completed,
                "stream ended without a usage chunk"
            );
        }
        let usage = end.usage.map(|u| with_tier(u, header_tier));
        accountant.record(&ctx.answer(status, usage));
    };
    let mut out = match plan.translated {
        Some(t) => {
            let translator = crate::providers::anthropic::translate::StreamTranslator::new(
                t.created,
                t.include_usage,
            );
            let sse =
                crate::providers::anthropic::relay::TranslatedSse::new(body, translator, on_end);
            let mut out = Response::new(sse.boxed_unsync());
            out.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            out
        }
        None => {
            let sse = match api {
                Api::Gemini => MeteredSse::gemini(body, on_end),
                Api::OpenAi | Api::Anthropic => MeteredSse::new(body, plan.include_usage, on_end),
            };
            let mut out = Response::new(sse.boxed_unsync());
            *out.headers_mut() = forward::relay_headers(parts.headers);
            out
        }
    };
    *out.status_mut() = parts.status;
    out.headers_mut()
        .insert(X_SLUICE_TIER, HeaderValue::from_static(tier.as_str()));
    out
}

/// `u` with the tier a header reported, where its body reported none.
fn with_tier(
    u: crate::types::Usage,
    header: Option<crate::types::ServedTier>,
) -> crate::types::Usage {
    crate::types::Usage {
        served_tier: u.served_tier.or(header),
        ..u
    }
}

/// The tier `x-sluice-tier` names: `flex` for a caller that asked for flex itself
/// (CONTRACT "Triage"), which is accounted as interactive — Sluice chose nothing, so it
/// claims no saving — and priced at the tier the provider reports.
fn shown_tier(call: &Call<'_>, served: Tier) -> Tier {
    if call.facts.service_tier_flex {
        Tier::Flex
    } else {
        served
    }
}

/// A response-cache hit, accounted as tier `response_cache`.
pub(super) fn cached(app: &App, call: &Call<'_>, hit: &CachedAnswer) -> Response<RespBody> {
    let priced = app.accountant.record(&Answer {
        route: &call.route.name,
        client: &call.client.name,
        provider: call.provider,
        model: &call.facts.model,
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
pub(super) fn record_failure(app: &App, ctx: &Ctx, e: &GatewayError) {
    app.accountant
        .record(&ctx.answer(e.status().as_u16(), None));
}

fn price_headers(h: &mut HeaderMap, tier: Tier, priced: Option<&Priced>) {
    h.insert(X_SLUICE_TIER, HeaderValue::from_static(tier.as_str()));
    if let Some(p) = priced {
        h.insert(X_SLUICE_COST, usd(p.cost_usd));
        h.insert(X_SLUICE_BASELINE, usd(p.baseline_usd));
    }
}
