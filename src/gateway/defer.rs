//! The batch tier on the request path: a durable job, then held, async or streamed delivery.

use super::*;

/// The batch tier: the job is durable before anything is acknowledged; then the caller
/// gets 202 (`Prefer: respond-async`), a held SSE stream, or the held answer.
#[allow(clippy::too_many_arguments)]
pub(super) async fn defer(
    app: &App,
    engine: &Arc<Engine>,
    headers: &HeaderMap,
    client: &ClientPolicy,
    route: &RoutePolicy,
    provider: Provider,
    endpoint: Endpoint,
    facts: &RequestFacts,
    sla: Sla,
    upstream_body: Bytes,
) -> Result<Response<RespBody>, GatewayError> {
    let body = crate::batch::openai::without_members(&upstream_body, &["stream", "stream_options"])
        .map_err(|e| {
            GatewayError::invalid(format!("the request body is not a JSON object: {e}"), None)
        })?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.is_empty() && k.len() <= 255 => Some(k.to_owned()),
            _ => {
                return Err(GatewayError::InvalidRequest {
                    message: "Idempotency-Key must be 1-255 visible ASCII characters".into(),
                    param: Some("idempotency-key"),
                    code: "invalid_idempotency_key",
                });
            }
        },
    };
    let now = crate::batch::now_ms();
    let job = NewJob {
        id: crate::batch::new_id("job"),
        client: client.name.to_string(),
        route: route.name.to_string(),
        idempotency_key,
        provider,
        endpoint,
        model: facts.model.clone(),
        body,
        stream: facts.stream,
        tier: Tier::Batch,
        prefix: facts.prefix_hash.map(|h| format!("{h:032x}")),
        created_at_ms: now,
        deadline_ms: now.saturating_add(sla.deadline().as_millis().min(i64::MAX as u128) as i64),
    };
    let id = job.id.clone();
    let job = match engine.submit(job).await? {
        Enqueued::Created => {
            engine
                .store()
                .job(&id)
                .await?
                .ok_or_else(|| GatewayError::NotReady {
                    reason: format!("job {id} was not stored"),
                })?
        }
        Enqueued::Existing(job) => *job,
    };
    let prefer_async = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"));
    if prefer_async {
        return Ok(deliver::accepted(&job));
    }
    if facts.stream {
        return Ok(deliver::hold_stream(
            engine.clone(),
            app.accountant.clone(),
            job,
            facts.client_wants_usage,
            app.keep_alive,
        ));
    }
    deliver::hold(engine, &app.accountant, &job.id).await
}
