//! The batch tier on the request path: a durable job, then held, async or streamed delivery.

use super::*;
use crate::deliver::{Held, HoldFor};

/// The batch tier: the job is durable before anything is acknowledged; then the caller
/// gets 202 (`Prefer: respond-async`), a held SSE stream, or the held answer.
pub(super) async fn defer(
    app: &App,
    engine: &Arc<Engine>,
    call: &Call<'_>,
    upstream_body: Bytes,
) -> Result<Reply, GatewayError> {
    let job = durable(engine, call, upstream_body).await?;
    deliver(app, engine, call, job).await
}

/// The job, stored before anything is acknowledged; a retry with the same
/// `Idempotency-Key` gets the job its first try created, if it is the same request, and
/// so does an SDK's retry without one (see [`retried`]).
async fn durable(
    engine: &Arc<Engine>,
    call: &Call<'_>,
    upstream_body: Bytes,
) -> Result<crate::store::Job, GatewayError> {
    let (client, route, facts, endpoint) = (call.client, call.route, &call.facts, call.endpoint);
    let retry_key = implicit_key(call);
    if let Some(job) = retried(engine, call, retry_key.as_deref()).await? {
        return Ok(job);
    }
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
        retry_key,
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

/// The implicit key of a call from an SDK that counts its tries and sent no
/// `Idempotency-Key` (whose semantics stand alone).
fn implicit_key(call: &Call<'_>) -> Option<String> {
    let admitted = &call.admitted;
    (admitted.idempotency_key.is_none() && admitted.hints.records_retries()).then(|| {
        crate::client_hints::retry_key(
            &call.route.name,
            call.endpoint.path(),
            &call.facts.model,
            call.facts.stream,
            &call.body,
        )
    })
}

/// A retry (`x-stainless-retry-count` ≥ 1) attaches to the newest job its client created
/// under the same implicit key within the idempotency window, unless that job ended in an
/// error the SDK retries on (then this try is a real retry: a new job). A first try never
/// attaches: two calls with the same body are two jobs.
async fn retried(
    engine: &Arc<Engine>,
    call: &Call<'_>,
    key: Option<&str>,
) -> Result<Option<crate::store::Job>, GatewayError> {
    let Some(key) = key.filter(|_| call.admitted.hints.is_retry()) else {
        return Ok(None);
    };
    let since = crate::batch::now_ms().saturating_sub(crate::store::IDEMPOTENCY_WINDOW_MS);
    let found = engine
        .store()
        .retried(&call.client.name, key, since)
        .await?;
    let job = found.filter(|j| crate::client_hints::attaches(j.result.as_ref().map(|r| r.status)));
    if let Some(j) = &job {
        tracing::info!(job = %j.id, retry = ?call.admitted.hints.retry_count, "an SDK retry attached to its first try's job");
    }
    Ok(job)
}

/// The caller gets 202 (`Prefer: respond-async`), a held stream, or the held answer,
/// which the request path returns to be awaited once the request itself is dropped.
async fn deliver(
    app: &App,
    engine: &Arc<Engine>,
    call: &Call<'_>,
    job: crate::store::Job,
) -> Result<Reply, GatewayError> {
    let (admitted, facts) = (&call.admitted, &call.facts);
    if admitted.prefer.respond_async {
        return Ok(Reply::Now(deliver::accepted(&job)));
    }
    // A retry attached to an answered job: the answer, whatever the caller's timeout.
    if job.result.is_some() && !facts.stream {
        return Ok(Reply::Now(deliver::finished(&job, &app.accountant)));
    }
    // Keep-alives well inside the caller's advertised timeout.
    let beat = admitted.hints.beat(app.keep_alive);
    if facts.stream {
        return Ok(Reply::Now(deliver::hold_stream(
            engine.clone(),
            app.accountant.clone(),
            job,
            facts.client_wants_usage,
            beat,
        )));
    }
    let how = match (admitted.prefer.wait, admitted.hints.commit_after()) {
        // `Prefer: wait=N`: held at most N seconds, then the job (202) to poll.
        (Some(wait), _) => HoldFor::AtMost(wait),
        // A hold that could outlive the caller's timeout commits early (`Prefer: wait`
        // above bounds the hold instead, as the caller asked).
        (None, Some(after)) => HoldFor::Committing { after, beat },
        (None, None) => HoldFor::Answer,
    };
    let (engine, accountant) = (engine.clone(), app.accountant.clone());
    let held = Held::new(engine, accountant, job, how);
    Ok(Reply::Held(held, call.endpoint.api()))
}
