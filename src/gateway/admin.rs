//! The gateway's own GET endpoints: readiness, models, jobs, turnaround.

use super::*;

/// Ready when the deferred tiers can work: their loop runs and the store takes a write.
pub(super) async fn ready(app: &App) -> Result<Response<RespBody>, GatewayError> {
    if let Some(engine) = &app.engine {
        engine
            .readiness()
            .await
            .map_err(|e| GatewayError::NotReady {
                reason: e.to_string(),
            })?;
    }
    Ok(full(StatusCode::OK, "text/plain", "ready\n"))
}

/// `GET /sluice/v1/jobs/{id}` and `/sluice/v1/jobs/{id}/result`.
pub(super) async fn jobs(
    app: &App,
    req: &http::request::Parts,
) -> Result<Response<RespBody>, GatewayError> {
    let client = app.policies.identify(gateway_key(&req.headers)?)?;
    let rest = &req.uri.path()["/sluice/v1/jobs/".len()..];
    let (id, result) = match rest.strip_suffix("/result") {
        Some(id) => (id, true),
        None => (rest, false),
    };
    let Some(engine) = &app.engine else {
        return Err(GatewayError::JobNotFound { id: id.to_owned() });
    };
    deliver::job_endpoint(engine, &app.accountant, &client.name, id, result).await
}

/// `GET /sluice/v1/turnaround`: observed batch turnaround percentiles per provider and model,
/// as of the engine's last census of the store: every replica answers the same, and a
/// request reads no store.
pub(super) async fn turnaround(
    app: &App,
    req: &http::request::Parts,
) -> Result<Response<RespBody>, GatewayError> {
    app.policies.identify(gateway_key(&req.headers)?)?;
    let mut data = Vec::new();
    let prior = app.engine.as_ref().map(|e| e.config().turnaround_prior);
    if let Some(engine) = &app.engine {
        // Gemini models are priced once and served by the Gemini API or Vertex AI.
        let mut serving: Vec<(&str, Provider)> = Vec::new();
        for (name, p) in app.prices.iter() {
            for s in crate::providers::serving(p.provider) {
                serving.push((name, *s));
            }
        }
        for (name, provider) in serving {
            if !engine.batches(provider) {
                continue;
            }
            let Some(o) = engine.observed_turnaround(provider, name) else {
                continue;
            };
            data.push(serde_json::json!({
                "provider": provider.as_str(),
                "model": name,
                "samples": o.samples,
                "p50_seconds": o.p50.as_secs_f64(),
                "p90_seconds": o.p90.as_secs_f64(),
                "p95_seconds": o.p95.as_secs_f64(),
                "p99_seconds": o.p99.as_secs_f64(),
                // What triage uses now: the p95 of the newest 200.
                "triage_p95_seconds": o.triage_p95.as_secs_f64(),
            }));
        }
    }
    let body = serde_json::json!({
        "object": "list",
        "prior_p95_seconds": prior.map(|d| d.as_secs()),
        "interactive_below_seconds": app.interactive_below.as_secs(),
        "data": data,
    });
    Ok(full(StatusCode::OK, "application/json", body.to_string()))
}

pub(super) fn models(
    app: &App,
    req: &http::request::Parts,
    id: Option<&str>,
) -> Result<Response<RespBody>, GatewayError> {
    app.policies.identify(gateway_key(&req.headers)?)?;
    let entry = |name: &str, provider: Provider| serde_json::json!({"id": name, "object": "model", "created": 0, "owned_by": provider.as_str()});
    // A Gemini model the model map sends to Vertex AI is Vertex's.
    let served = |name: &str, p: Provider| {
        crate::providers::served_by(p, app.policies.models.provider_for(name))
    };
    let mut data: Vec<serde_json::Value> = app
        .prices
        .iter()
        .map(|(name, p)| (name, served(name, p.provider)))
        .filter(|(_, p)| app.configured.contains(p))
        .map(|(name, p)| entry(name, p))
        .collect();
    data.extend(
        app.policies
            .models
            .configured_models()
            .filter(|(m, p)| app.configured.contains(p) && app.prices.get(m).is_none())
            .map(|(m, p)| entry(m, p)),
    );
    let body =
        match id {
            None => serde_json::json!({"object": "list", "data": data}),
            Some(id) => data.into_iter().find(|m| m["id"] == id).ok_or_else(|| {
                GatewayError::ModelNotFound {
                    model: id.to_owned(),
                }
            })?,
        };
    Ok(full(StatusCode::OK, "application/json", body.to_string()))
}
