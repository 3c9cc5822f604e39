//! Triage and what it implies for the request: the tier (pure `triage`), the response
//! cache key, and the bodies the provider will get — only fields the destination accepts
//! added, Claude requests translated to Messages, cache breakpoints where they pay.

use super::*;
use crate::providers::anthropic;

/// How one request will be served.
pub(super) struct Plan {
    pub tier: Tier,
    /// The response-cache key and TTL, when the route caches answers.
    pub cache: Option<([u8; 32], Duration)>,
    /// The provider's endpoint (Messages for a translated chat request).
    pub upstream: Endpoint,
    /// The body for the provider at its default tier.
    pub body: Bytes,
    /// The same with `service_tier: "flex"`, on the flex tier.
    pub flex_body: Option<Bytes>,
    /// Sluice asked for the usage chunk of a stream the caller did not ask it of.
    pub include_usage: bool,
    /// An OpenAI chat request served by Anthropic: the answer is translated back.
    pub translated: Option<Translation>,
}

#[derive(Clone, Copy)]
pub(super) struct Translation {
    /// The provider streams its answer (translated chunk by chunk).
    pub stream: bool,
    /// The caller asked for a stream the provider answers whole (a chat request sent to
    /// Vertex AI's `generateContent`): the translated answer is sent as its chunk stream.
    pub synth_stream: bool,
    /// The caller asked for `stream_options.include_usage`.
    pub include_usage: bool,
    /// Unix seconds the caller's request arrived: the `created` of the answer.
    pub created: i64,
}

pub(super) fn plan(app: &App, call: &Call<'_>) -> Result<Plan, GatewayError> {
    let caps = crate::providers::capabilities(call.provider);
    let flex_capable = !call.facts.has_service_tier
        && app
            .prices
            .get(&call.facts.model)
            .is_some_and(|(_, p)| p.has_flex());
    let decision = triage::triage(
        call.route,
        &Facts {
            endpoint: call.endpoint,
            stream: call.facts.stream,
            flex_capable,
        },
        call.sla,
        &capabilities(app, call, caps),
    );
    let cache = decision.response_cache_ttl.and_then(|ttl| {
        // A Gemini-native body does not name its model: the URL's model is part of the key.
        let path = call
            .endpoint
            .path()
            .replace(crate::providers::MODEL, &call.facts.model);
        ResponseCache::key(&call.client.name, &call.route.name, &path, &call.body).map(|k| (k, ttl))
    });
    let upstream = crate::providers::upstream_endpoint(call.provider, call.endpoint);
    if upstream != call.endpoint {
        return translated(call, decision.tier, cache, upstream);
    }
    let accepts = app.accepts(call.provider);
    let additions = Additions {
        prompt_cache_key: match (
            call.route.cache_hints && accepts.prompt_cache_key,
            call.facts.has_cache_key,
            &call.facts.prefix_hash,
        ) {
            (true, false, Some(h))
                if !matches!(
                    call.endpoint,
                    Endpoint::Embeddings | Endpoint::Messages | Endpoint::GenerateContent
                ) =>
            {
                Some(inspect::cache_key(&call.client.name, &call.route.name, *h))
            }
            _ => None,
        },
        include_usage: accepts.stream_options
            && call.facts.stream
            && call.endpoint.takes_stream_options()
            && !call.facts.client_wants_usage,
        flex: false,
    };
    let mut body = inspect::rewrite(&call.body, &call.facts, &additions);
    if call.endpoint == Endpoint::Messages && call.route.cache_hints {
        if let Some(b) =
            anthropic::cache::with_breakpoints(&body, &call.facts.model, cache_ttl(decision.tier))
        {
            body = b;
        }
    }
    let flex_body = (decision.tier == Tier::Flex).then(|| {
        let flex = Additions {
            flex: true,
            ..additions.clone()
        };
        inspect::rewrite(&call.body, &call.facts, &flex)
    });
    Ok(Plan {
        tier: decision.tier,
        cache,
        upstream,
        body,
        flex_body,
        include_usage: additions.include_usage,
        translated: None,
    })
}

/// Anthropic caches only at explicit breakpoints; batches can run far apart, so they get
/// the 1-hour cache.
fn cache_ttl(tier: Tier) -> &'static str {
    if tier == Tier::Batch { "1h" } else { "5m" }
}

/// An OpenAI chat request for a Claude model, as the Messages request Anthropic gets.
fn translated(
    call: &Call<'_>,
    tier: Tier,
    cache: Option<([u8; 32], Duration)>,
    upstream: Endpoint,
) -> Result<Plan, GatewayError> {
    if upstream == Endpoint::GenerateContent {
        return to_generate_content(call, tier, cache, upstream);
    }
    let mut req = anthropic::translate::request_to_anthropic(&call.body).map_err(|e| {
        GatewayError::Untranslatable {
            param: e.param().map(str::to_owned),
            message: e.to_string(),
        }
    })?;
    if call.route.cache_hints {
        anthropic::cache::add_breakpoints(&mut req.body, &req.model, cache_ttl(tier));
    }
    Ok(Plan {
        tier,
        cache,
        upstream,
        body: Bytes::from(req.body.to_string()),
        flex_body: None,
        include_usage: false,
        translated: Some(Translation {
            stream: req.stream,
            synth_stream: false,
            include_usage: req.include_usage,
            created: crate::clock::now_ms() / 1000,
        }),
    })
}

/// An OpenAI chat request for a model sent to Vertex AI, as the `GenerateContentRequest`
/// its native API takes (batched as it is, or sent to `generateContent`). Streamed
/// requests are answered whole and sent as a chunk stream: Sluice has no translator of
/// Gemini's stream to chat chunks.
fn to_generate_content(
    call: &Call<'_>,
    tier: Tier,
    cache: Option<([u8; 32], Duration)>,
    upstream: Endpoint,
) -> Result<Plan, GatewayError> {
    let body = crate::providers::gemini::translate::request_from_openai(&call.body).map_err(
        |message| GatewayError::Untranslatable {
            param: None,
            message,
        },
    )?;
    Ok(Plan {
        tier,
        cache: cache.filter(|_| !call.facts.stream),
        upstream,
        body: Bytes::from(body),
        flex_body: None,
        include_usage: false,
        translated: Some(Translation {
            stream: false,
            synth_stream: call.facts.stream,
            include_usage: call.facts.client_wants_usage,
            created: crate::clock::now_ms() / 1000,
        }),
    })
}

/// What the gateway can do for this request right now.
fn capabilities(app: &App, call: &Call<'_>, caps: &crate::providers::Capabilities) -> Capabilities {
    // A client-chosen service tier is honoured synchronously, never batched nor flexed.
    // A client that pays from its own OpenAI organization or project is not mixed into
    // shared batches, which carry the gateway's.
    let flex = crate::providers::flex(
        call.provider,
        call.endpoint,
        app.accepts(call.provider).service_tier,
    );
    match &app.engine {
        Some(e) => Capabilities {
            batch: e.batches(call.provider)
                && caps.batches(call.endpoint)
                && !call.facts.has_service_tier
                && call.client.billing(call.provider).headers.is_empty()
                && crate::providers::batchable(call.provider, call.endpoint, &call.body),
            flex,
            batch_turnaround_p95: e.turnaround_p95(call.provider, &call.facts.model),
            batch_lead: e.config().batch_lead(),
            interactive_below: app.interactive_below,
        },
        None => Capabilities {
            flex,
            interactive_below: app.interactive_below,
            ..Capabilities::INTERACTIVE_ONLY
        },
    }
}
