//! Bounded log of the requests the simulator received, for tests.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};
use serde::Serialize;
use serde::ser::SerializeMap;

use super::body::json_bytes;
use super::error::ApiError;

/// How many requests the log keeps (oldest dropped first).
pub const LOG_CAPACITY: usize = 1_000;

/// One received request, exactly as it arrived.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: Method,
    /// Request URI (path and query).
    pub uri: Uri,
    /// All request headers.
    pub headers: HeaderMap,
    /// The exact body bytes (shared, not copied).
    pub body: Bytes,
}

impl Serialize for LoggedRequest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("method", self.method.as_str())?;
        m.serialize_entry("path", self.uri.path())?;
        m.serialize_entry("headers", &Headers(&self.headers))?;
        m.serialize_entry("body", &String::from_utf8_lossy(&self.body))?;
        m.end()
    }
}

/// Headers as a JSON object of lower-case name → value (repeated headers joined by ", ").
struct Headers<'a>(&'a HeaderMap);

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.keys_len()))?;
        for name in self.0.keys() {
            let mut joined = String::new();
            for (i, v) in self.0.get_all(name).iter().enumerate() {
                if i > 0 {
                    joined.push_str(", ");
                }
                joined.push_str(&String::from_utf8_lossy(v.as_bytes()));
            }
            m.serialize_entry(name.as_str(), &joined)?;
        }
        m.end()
    }
}

/// Ring buffer of the last [`LOG_CAPACITY`] requests.
#[derive(Debug, Default)]
pub struct RequestLog {
    entries: Mutex<VecDeque<LoggedRequest>>,
}

impl RequestLog {
    /// Appends a request, dropping the oldest when full.
    pub fn record(&self, entry: LoggedRequest) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= LOG_CAPACITY {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// A snapshot, oldest first.
    pub fn snapshot(&self) -> Vec<LoggedRequest> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.iter().cloned().collect()
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// The log as a JSON array, oldest first.
    pub fn to_json(&self) -> Result<Bytes, ApiError> {
        json_bytes(&self.snapshot())
    }
}
