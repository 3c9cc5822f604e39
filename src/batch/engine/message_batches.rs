//! The Anthropic Message Batches side of the engine: no input file (the requests go in the
//! create call), and reconciliation after a crash without batch metadata.

use super::{Engine, EngineError, ms};
use crate::batch::anthropic;
use crate::batch::client::BatchApiError;
use crate::batch::failpoint;
use crate::batch::openai::Batch;
use crate::store::{Flush, FlushState, FlushUpdate};

impl Engine {
    /// Anthropic Message Batches: no file; the requests go in the create call itself.
    pub(super) async fn advance_message_batch(
        &self,
        f: &Flush,
        now: i64,
    ) -> Result<i64, EngineError> {
        match f.state {
            FlushState::Submitted => {
                let Some(batch_id) = &f.batch_id else {
                    return Err(EngineError::Invariant(format!(
                        "flush {} submitted without a batch id",
                        f.id
                    )));
                };
                let raw = self
                    .client
                    .get_raw(f.provider, &format!("/messages/batches/{batch_id}"))
                    .await?;
                let (b, _) =
                    anthropic::parse_batch(&raw).map_err(|reason| BatchApiError::Decode {
                        provider: f.provider.as_str(),
                        reason,
                    })?;
                self.polled(f, &b, now).await
            }
            FlushState::Ended => Ok(now + ms(self.cfg.poll_interval)),
            state => {
                if state == FlushState::Creating {
                    if let Some(b) = self.find_message_batch(f).await? {
                        self.record_submitted(f, &b, now).await?;
                        return Ok(now + ms(self.cfg.poll_interval));
                    }
                }
                self.store
                    .update_flush(
                        &f.id,
                        FlushUpdate {
                            state: Some(FlushState::Creating),
                            ..FlushUpdate::default()
                        },
                    )
                    .await?;
                failpoint("before_create");
                match self.create_message_batch(f).await {
                    Ok(b) => {
                        failpoint("after_create");
                        self.record_submitted(f, &b, now).await?;
                        Ok(now + ms(self.cfg.poll_interval))
                    }
                    Err(EngineError::Api(e)) if e.is_retryable() => {
                        self.back_off_create(f, &e, FlushState::Claimed, now).await
                    }
                    Err(EngineError::Api(e)) => {
                        self.fail_all(f, &e.to_string(), now).await?;
                        Ok(now)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Creates an Anthropic Message Batch whose JSON body is streamed from the store.
    pub(super) async fn create_message_batch(&self, f: &Flush) -> Result<Batch, EngineError> {
        let rx = self.stream_bodies(
            f,
            anthropic::BODY_HEAD.to_vec(),
            anthropic::BODY_TAIL.to_vec(),
            |first, id, body, out| {
                if !first {
                    out.extend_from_slice(b",");
                }
                out.extend_from_slice(&anthropic::request_entry(id, body));
            },
        );
        let raw = self.client.create_message_batch(f.provider, rx).await?;
        let (b, _) = anthropic::parse_batch(&raw).map_err(|reason| BatchApiError::Decode {
            provider: f.provider.as_str(),
            reason,
        })?;
        Ok(b)
    }

    /// Finds an Anthropic batch created for this flush before a crash recorded its id.
    /// Message Batches carry no metadata, so the match is on the request count, a creation
    /// time no earlier than the flush (less a minute of clock skew), and no other flush
    /// having recorded the batch. Another client of the same key creating a batch of the
    /// same size in that window could still be mistaken for it.
    pub(super) async fn find_message_batch(&self, f: &Flush) -> Result<Option<Batch>, EngineError> {
        let mut path = "/messages/batches?limit=100".to_owned();
        for _ in 0..10 {
            let raw = self.client.get_raw(f.provider, &path).await?;
            let (page, next) =
                anthropic::parse_list(&raw).map_err(|reason| BatchApiError::Decode {
                    provider: f.provider.as_str(),
                    reason,
                })?;
            for (b, facts) in page {
                let created = facts
                    .created_at
                    .as_deref()
                    .and_then(rfc3339_ms)
                    .unwrap_or(i64::MAX);
                if facts.requests == u64::from(f.job_count)
                    && created + 60_000 >= f.created_at_ms
                    && !self.store.batch_recorded(&b.id).await?
                {
                    return Ok(Some(b));
                }
            }
            match next {
                Some(after) => path = format!("/messages/batches?limit=100&after_id={after}"),
                None => break,
            }
        }
        Ok(None)
    }
}

/// Unix milliseconds of an RFC 3339 UTC timestamp (`2026-01-01T00:41:12.513310Z`).
fn rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if b.len() < 20 || b[4] != b'-' || b[10] != b'T' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        assert_eq!(super::rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            super::rfc3339_ms("2026-01-01T00:00:00.000000Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(super::rfc3339_ms("nope"), None);
    }
}
