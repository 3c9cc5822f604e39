//! Serving a planned request: from the response cache, deferred to the batch tier, or sent
//! to the provider (flex first where triage chose it, the default tier in time).

use super::*;
use plan::Plan;

pub(super) async fn execute(
    app: &Arc<App>,
    call: Call<'_>,
    plan: Plan,
) -> Result<Reply, GatewayError> {
    if let Some((key, _)) = &plan.cache {
        if let Some(hit) = app.response_cache.get(key).await {
            return Ok(Reply::Now(respond::cached(app, &call, &hit)));
        }
    }
    if plan.tier == Tier::Batch {
        if let Some(engine) = &app.engine {
            return defer(app, engine, &call, plan.body).await;
        }
    }
    let mut ctx = Ctx {
        client: call.client.name.clone(),
        route: call.route.name.clone(),
        provider: call.provider,
        model: call.facts.model.clone(),
        tier: plan.tier,
        sla: call.sla,
        arrived: call.arrived,
    };
    let sent = Instant::now();
    let resp = match send(app, &call, &plan, &mut ctx).await {
        Ok(r) => r,
        Err(e) => {
            respond::record_failure(app, &ctx, &e);
            return Err(e);
        }
    };
    let response = respond::upstream(app, ctx, &call, plan, resp, sent).await?;
    Ok(Reply::Now(response))
}

/// Headers the provider gets: the caller's end-to-end ones through the allow-list, or, for
/// a translated request, only those Anthropic understands.
fn headers_for<'a>(call: &Call<'a>, plan: &Plan) -> std::borrow::Cow<'a, HeaderMap> {
    if plan.translated.is_none() {
        return std::borrow::Cow::Borrowed(call.headers);
    }
    let mut forwarded = HeaderMap::new();
    for (name, value) in call.headers {
        let n = name.as_str();
        if n.starts_with("anthropic-") || n.starts_with("x-sim-") {
            forwarded.append(name.clone(), value.clone());
        }
    }
    std::borrow::Cow::Owned(forwarded)
}

async fn send(
    app: &App,
    call: &Call<'_>,
    plan: &Plan,
    ctx: &mut Ctx,
) -> Result<http::Response<Incoming>, GatewayError> {
    let headers = headers_for(call, plan);
    let billing = match plan.translated {
        Some(_) => forward::Billing::NONE,
        None => call.client.billing(call.provider),
    };
    let to = forward::To {
        provider: call.provider,
        endpoint: plan.upstream,
        model: &call.facts.model,
        stream: plan.translated.map_or(call.facts.stream, |t| t.stream),
    };
    let send = |body: Bytes| app.forwarder.send_to(to, &headers, billing, body);
    let Some(flex_body) = &plan.flex_body else {
        return send(plan.body.clone()).await;
    };
    // Leave the default-tier call its lead time; a short SLA splits the time in half.
    let deadline = call.sla.deadline();
    let budget = if deadline > app.fallback_lead * 2 {
        deadline - app.fallback_lead
    } else {
        deadline / 2
    };
    let reason = match tokio::time::timeout(budget, send(flex_body.clone())).await {
        Ok(Ok(r)) if !crate::providers::flex_refused(call.provider, r.status()) => return Ok(r),
        Ok(Ok(_)) => "flex_unavailable",
        Ok(Err(e)) => return Err(e),
        Err(_) => "flex_timeout",
    };
    app.metrics()
        .fallbacks
        .with_label_values(&[&ctx.route, Tier::Flex.as_str(), reason])
        .inc();
    ctx.tier = Tier::Interactive;
    send(plan.body.clone()).await
}
