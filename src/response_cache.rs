//! Exact-match response cache (moka, in memory): an identical non-streaming request from the
//! same client and route within the route's TTL is answered from here. Bounded by bytes;
//! each entry carries its own TTL because routes differ.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

use crate::types::Usage;

#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub status: u16,
    pub content_type: Option<http::HeaderValue>,
    pub body: Bytes,
    /// The usage of the original answer: what this hit would have cost.
    pub usage: Option<Usage>,
    pub ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<[u8; 32], Arc<CachedAnswer>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<CachedAnswer>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[derive(Clone)]
pub struct ResponseCache {
    cache: Cache<[u8; 32], Arc<CachedAnswer>>,
}

impl ResponseCache {
    pub fn new(max_bytes: u64) -> ResponseCache {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &[u8; 32], v: &Arc<CachedAnswer>| -> u32 {
                (v.body.len() + 256).try_into().unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .build();
        ResponseCache { cache }
    }

    /// The key: client, route, path and the body in canonical JSON (object keys sorted,
    /// insignificant whitespace dropped), so formatting differences still hit.
    pub fn key(client: &str, route: &str, path: &str, body: &[u8]) -> Option<[u8; 32]> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        // serde_json's default map is a BTreeMap, so `to_vec` writes keys sorted.
        let canonical = serde_json::to_vec(&v).ok()?;
        let mut h = Sha256::new();
        for part in [client.as_bytes(), route.as_bytes(), path.as_bytes()] {
            h.update(part);
            h.update([0]);
        }
        h.update(&canonical);
        Some(h.finalize().into())
    }

    pub async fn get(&self, key: &[u8; 32]) -> Option<Arc<CachedAnswer>> {
        self.cache.get(key).await
    }

    pub async fn put(&self, key: [u8; 32], answer: CachedAnswer) {
        self.cache.insert(key, Arc::new(answer)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_formatting_but_not_content_or_client() {
        let a = ResponseCache::key(
            "c",
            "r",
            "/v1/chat/completions",
            br#"{"model":"m","messages":[1]}"#,
        );
        let b = ResponseCache::key(
            "c",
            "r",
            "/v1/chat/completions",
            b"{ \"messages\": [1],\n \"model\": \"m\" }",
        );
        let other_client = ResponseCache::key(
            "d",
            "r",
            "/v1/chat/completions",
            br#"{"model":"m","messages":[1]}"#,
        );
        let other_body = ResponseCache::key(
            "c",
            "r",
            "/v1/chat/completions",
            br#"{"model":"m","messages":[2]}"#,
        );
        assert!(a.is_some());
        assert_eq!(a, b);
        assert_ne!(a, other_client);
        assert_ne!(a, other_body);
    }

    #[tokio::test]
    async fn stores_and_returns() {
        let c = ResponseCache::new(1 << 20);
        let k = [1u8; 32];
        assert!(c.get(&k).await.is_none());
        c.put(
            k,
            CachedAnswer {
                status: 200,
                content_type: None,
                body: Bytes::from_static(b"{}"),
                usage: None,
                ttl: Duration::from_secs(60),
            },
        )
        .await;
        assert_eq!(c.get(&k).await.unwrap().body, Bytes::from_static(b"{}"));
    }
}
