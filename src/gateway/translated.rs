//! `claude-*` models on `/v1/chat/completions`: translated to the Messages API and back.

use super::*;

/// An OpenAI chat-completions request for a Claude model: translated to Anthropic's Messages
/// API and back, so the OpenAI SDK gets a `chat.completion` (or its chunks).
pub(super) async fn translated(
    app: &App,
    ctx: Ctx,
    headers: &HeaderMap,
    body: &Bytes,
    received: Instant,
    cache_hints: bool,
) -> Result<Response<RespBody>, GatewayError> {
    use crate::anthropic::translate;
    let mut req =
        translate::request_to_anthropic(body).map_err(|e| GatewayError::Untranslatable {
            param: e.param().map(str::to_owned),
            message: e.to_string(),
        })?;
    if cache_hints {
        crate::anthropic::cache::add_breakpoints(&mut req.body, &req.model, "5m");
    }
    let upstream_body = Bytes::from(req.body.to_string());
    let created = crate::batch::now_ms() / 1000;
    let sent = Instant::now();
    // Only end-to-end headers Anthropic understands go along; the OpenAI SDK's do not matter there.
    let mut forwarded = HeaderMap::new();
    for name in [
        "anthropic-version",
        "anthropic-beta",
        "x-sim-fault",
        "x-sim-latency-ms",
    ] {
        if let Some(v) = headers.get(name) {
            forwarded.insert(name, v.clone());
        }
    }
    let resp = app
        .forwarder
        .send(
            ctx.provider,
            Endpoint::Messages,
            &ctx.facts.model,
            &forwarded,
            forward::Billing::NONE,
            upstream_body,
        )
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            record_failure(app, &ctx, &e);
            return Err(e);
        }
    };
    let (up_parts, up_body) = resp.into_parts();
    let status = up_parts.status;
    if req.stream && status.is_success() && forward::is_event_stream(&up_parts.headers) {
        observe_latency(app, &ctx, sent.elapsed(), received.elapsed());
        let accountant = app.accountant.clone();
        let translator = translate::StreamTranslator::new(created, req.include_usage);
        let body = crate::anthropic::relay::TranslatedSse::new(
            up_body,
            translator,
            move |end: StreamEnd| {
                ctx.check_deadline(accountant.metrics());
                accountant.record(&Answer {
                    route: &ctx.route,
                    client: &ctx.client,
                    provider: ctx.provider,
                    model: &ctx.facts.model,
                    tier: ctx.tier,
                    status: status.as_u16(),
                    usage: end.usage,
                });
            },
        );
        let mut out = Response::new(body.boxed_unsync());
        out.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        out.headers_mut().insert(
            X_SLUICE_TIER,
            HeaderValue::from_static(Tier::Interactive.as_str()),
        );
        return Ok(out);
    }
    let answer =
        match forward::read_answer(ctx.provider, up_body, app.forwarder.response_timeout()).await {
            Ok(a) => a,
            Err(e) => {
                record_failure(app, &ctx, &e);
                return Err(e);
            }
        };
    let upstream_time = sent.elapsed();
    // Priced from Anthropic's own usage: it keeps the 5-minute / 1-hour cache-write split.
    let usage = status
        .is_success()
        .then(|| crate::usage::from_json(&answer))
        .flatten();
    let answer = if status.is_success() {
        translate::response_to_openai(&answer, created).map_err(|e| {
            GatewayError::UpstreamBadResponse {
                provider: ctx.provider.as_str(),
                reason: e.to_string(),
            }
        })?
    } else {
        translate::error_to_openai(&answer)
    };
    let priced = app.accountant.record(&Answer {
        route: &ctx.route,
        client: &ctx.client,
        provider: ctx.provider,
        model: &ctx.facts.model,
        tier: ctx.tier,
        status: status.as_u16(),
        usage,
    });
    let mut out = full(status, "application/json", answer);
    for name in ["request-id", "retry-after"] {
        if let Some(v) = up_parts.headers.get(name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    price_headers(out.headers_mut(), ctx.tier, priced.as_ref());
    observe_latency(app, &ctx, upstream_time, received.elapsed());
    ctx.check_deadline(app.metrics());
    Ok(out)
}
