//! The batch tier on the request path: a durable job, then held, async or streamed delivery.

use super::*;

/// The batch tier: the job is durable before anything is acknowledged; then the caller
/// gets 202 (`Prefer: respond-async`), a held SSE stream, or the held answer.
pub(super) async fn defer(
    app: &App,
    engine: &Arc<Engine>,
    call: &Call<'_>,
    upstream_body: Bytes,
) -> Result<Response<RespBody>, GatewayError> {
    let job = durable(engine, call, upstream_body).await?;
    deliver(app, engine, call, job).await
}

/// The job, stored before anything is acknowledged; a retry with the same
/// `Idempotency-Key` gets the job its first try created, if it is the same request.
async fn durable(
    engine: &Arc<Engine>,
    call: &Call<'_>,
    upstream_body: Bytes,
) -> Result<crate::store::Job, GatewayError> {
    let (client, route, facts, endpoint) = (call.client, call.route, &call.facts, call.endpoint);
    // A batch line never streams; the answer is turned into a stream on delivery.
    let body = crate::inspect::without_members(&upstream_body, &["stream", "stream_options"])
        .map_err(|e| {
            GatewayError::invalid(format!("the request body is not a JSON object: {e}"), None)
        })?;
    let now = crate::batch::now_ms();
    let job = NewJob {
        id: crate::batch::new_id("job"),
        client: client.name.to_string(),
        route: route.name.to_string(),
        idempotency_key: call.admitted.idempotency_key.clone(),
        provider: call.provider,
        endpoint,
        model: facts.model.clone(),
        body: body.clone(),
        stream: facts.stream,
        tier: Tier::Batch,
        prefix: facts.prefix_hash.map(|h| format!("{h:032x}")),
        created_at_ms: now,
        deadline_ms: now
            .saturating_add(call.sla.deadline().as_millis().min(i64::MAX as u128) as i64),
    };
    let id = job.id.clone();
    Ok(match engine.submit(job).await? {
        Enqueued::Created => {
            engine
                .store()
                .job(&id)
                .await?
                .ok_or_else(|| GatewayError::NotReady {
                    reason: format!("job {id} was not stored"),
                })?
        }
        Enqueued::Existing(existing) => {
            // The key names one request: a retry must be that request, byte for byte
            // as it would go upstream (draft-ietf-httpapi-idempotency-key-header, 422).
            // This also binds the key to the content in open mode, where every caller
            // is client `default` and keys could be guessed.
            let what = if existing.endpoint != endpoint {
                Some("endpoint")
            } else if existing.model != facts.model {
                Some("model")
            } else if existing.stream != facts.stream {
                Some("stream")
            } else if engine.store().job_body(&existing.id).await?.as_ref() != Some(&body) {
                Some("body")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(GatewayError::IdempotencyKeyMismatch { what });
            }
            *existing
        }
    })
}

/// The caller gets 202 (`Prefer: respond-async`), a held stream, or the held answer.
async fn deliver(
    app: &App,
    engine: &Arc<Engine>,
    call: &Call<'_>,
    job: crate::store::Job,
) -> Result<Response<RespBody>, GatewayError> {
    let (admitted, facts) = (&call.admitted, &call.facts);
    if admitted.prefer.respond_async {
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
    match admitted.prefer.wait {
        // `Prefer: wait=N`: held at most N seconds, then the job (202) to poll.
        Some(wait) => {
            match tokio::time::timeout(wait, deliver::hold(engine, &app.accountant, &job.id)).await
            {
                Ok(answer) => answer,
                Err(_) => {
                    let job = engine.store().job(&job.id).await?.unwrap_or(job);
                    Ok(deliver::accepted(&job))
                }
            }
        }
        None => deliver::hold(engine, &app.accountant, &job.id).await,
    }
}
