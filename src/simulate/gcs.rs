//! The Cloud Storage JSON API subset of reference 3.6, in memory, at the simulator root
//! (`https://storage.googleapis.com` ↔ the simulator's base URL without `/v1`):
//!
//! * `POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name={object}`: the raw body
//!   becomes the object (an existing one is replaced, with a new `generation`); any
//!   `Content-Type` is accepted and stored (default `application/octet-stream`);
//!   other `uploadType`s (`multipart`, `resumable`) answer 400;
//! * `GET /storage/v1/b/{bucket}/o?prefix=&delimiter=&maxResults=&pageToken=`: names in
//!   lexicographic order, `maxResults` default 1000; `items` and `prefixes` are omitted
//!   when empty, `nextPageToken` present only when more remain;
//! * `GET /storage/v1/b/{bucket}/o/{object}`: the `Object` resource (`kind`, `id`,
//!   `selfLink`, `mediaLink`, `name`, `bucket`, `generation`, `metageneration`,
//!   `contentType`, `storageClass`, `size` (string), `timeCreated`, `updated`, `etag`);
//!   with `?alt=media` the raw bytes;
//! * `DELETE /storage/v1/b/{bucket}/o/{object}`: 204.
//!
//! Object names in paths are percent-decoded (`/` arrives as `%2F`); in the query they
//! are form-decoded. Buckets exist only when listed in
//! [`super::VertexConfig::buckets`] (default `sim-bucket`); others answer 404 "The
//! specified bucket does not exist.". Errors use the GCS envelope
//! `{"error":{"code","message","errors":[{"message","domain":"global","reason"}]}}`.
//! Every route needs a bearer token from `POST /token` (401 `required` otherwise).
//! Batch prediction output appears under a job's output prefix when the job is terminal
//! (every GCS request first settles finished jobs, see `vertex.rs`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::Simulator;
use super::anthropic_batch::rfc3339;
use super::body::SimBody;
use super::files::query_params;
use super::gemini_files::unix_ms;
use super::multipart::percent_decode;

/// Default (and largest) `maxResults` of a list.
const LIST_MAX: usize = 1000;

/// A stored object.
#[derive(Debug, Clone)]
pub struct Object {
    /// The bytes.
    pub data: Bytes,
    /// `contentType`.
    pub content_type: String,
    /// `generation` (unique per write).
    pub generation: u64,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
}

/// A GCS error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsError {
    /// HTTP status and `error.code`.
    pub status: StatusCode,
    /// `error.message`.
    pub message: String,
    /// `error.errors[0].reason`.
    pub reason: &'static str,
}

impl GcsError {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            reason,
        }
    }

    /// 401 for a missing, unknown or expired token.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "required",
            "Anonymous caller does not have storage.objects.get access to the Google Cloud Storage object. Permission 'storage.objects.get' denied on resource (or it may not exist).",
        )
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    fn no_bucket() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "notFound",
            "The specified bucket does not exist.",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"error": {
            "code": self.status.as_u16(),
            "message": self.message,
            "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
        }}))
        .unwrap_or_default()
    }
}

/// The error response.
pub fn error_response(err: &GcsError) -> Response<SimBody> {
    let mut resp = Response::new(SimBody::full(Bytes::from(err.body())));
    *resp.status_mut() = err.status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// All objects, by (bucket, name).
#[derive(Debug, Default)]
pub struct GcsStore {
    inner: Mutex<BTreeMap<(String, String), Object>>,
}

impl GcsStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Object>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes (or replaces) an object.
    pub fn put(&self, bucket: &str, name: &str, data: Bytes, content_type: &str, generation: u64) {
        self.lock().insert(
            (bucket.to_owned(), name.to_owned()),
            Object {
                data,
                content_type: content_type.to_owned(),
                generation,
                created_ms: unix_ms(),
            },
        );
    }

    /// An object's bytes.
    pub fn get(&self, bucket: &str, name: &str) -> Option<Bytes> {
        self.lock()
            .get(&(bucket.to_owned(), name.to_owned()))
            .map(|o| o.data.clone())
    }
}

/// `gs://bucket/path` → (`bucket`, `path`).
pub fn parse_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("gs://")?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, path))
}

fn resource(bucket: &str, name: &str, o: &Object) -> Value {
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let time = rfc3339(o.created_ms);
    json!({
        "kind": "storage#object",
        "id": format!("{bucket}/{name}/{}", o.generation),
        "selfLink": format!("https://www.googleapis.com/storage/v1/b/{bucket}/o/{encoded}"),
        "mediaLink": format!("https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{encoded}?generation={}&alt=media", o.generation),
        "name": name,
        "bucket": bucket,
        "generation": o.generation.to_string(),
        "metageneration": "1",
        "contentType": o.content_type,
        "storageClass": "STANDARD",
        "size": o.data.len().to_string(),
        "timeCreated": time,
        "updated": time,
        "etag": URL_SAFE_NO_PAD.encode(o.generation.to_be_bytes()),
    })
}

fn json_ok(value: &Value) -> Response<SimBody> {
    super::gemini::json_response(value)
}

/// Answers one GCS request (the caller checked the token).
pub fn handle(sim: &Simulator, parts: &Parts, body: &Bytes) -> Result<Response<SimBody>, GcsError> {
    let path = parts.uri.path();
    let method = &parts.method;
    let params = query_params(parts.uri.query());
    let find = |k: &str| {
        params
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let known = |b: &str| sim.config.vertex.buckets.iter().any(|k| k == b);
    let not_found = || {
        GcsError::new(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("Not Found: {method} {path}"),
        )
    };
    if let Some(rest) = path.strip_prefix("/upload/storage/v1/b/") {
        let bucket = rest.strip_suffix("/o").ok_or_else(not_found)?;
        if *method != Method::POST {
            return Err(not_found());
        }
        if find("uploadType") != Some("media") {
            return Err(GcsError::invalid(format!(
                "The simulator supports only uploadType=media; got {:?}.",
                find("uploadType").unwrap_or("")
            )));
        }
        let name = find("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| GcsError::new(StatusCode::BAD_REQUEST, "required", "Required"))?;
        if !known(bucket) {
            return Err(GcsError::no_bucket());
        }
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .unwrap_or("application/octet-stream");
        let generation = 1_700_000_000_000_000 + sim.next_seq();
        sim.vertex
            .gcs
            .put(bucket, name, body.clone(), content_type, generation);
        let store = sim.vertex.gcs.lock();
        let o = store
            .get(&(bucket.to_owned(), name.to_owned()))
            .ok_or_else(not_found)?;
        return Ok(json_ok(&resource(bucket, name, o)));
    }
    let rest = path.strip_prefix("/storage/v1/b/").ok_or_else(not_found)?;
    let (bucket, object) = match rest.split_once("/o") {
        Some((b, "")) => (b, None),
        Some((b, o)) if o.starts_with('/') && o.len() > 1 => (b, Some(&o[1..])),
        _ => return Err(not_found()),
    };
    if !known(bucket) {
        return Err(GcsError::no_bucket());
    }
    let Some(object) = object else {
        if *method != Method::GET {
            return Err(not_found());
        }
        return Ok(json_ok(&list(sim, bucket, &find)?));
    };
    let name = String::from_utf8(percent_decode(object))
        .map_err(|_| GcsError::invalid("The object name is not UTF-8."))?;
    let no_object = || {
        GcsError::new(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("No such object: {bucket}/{name}"),
        )
    };
    let key = (bucket.to_owned(), name.clone());
    let mut store = sim.vertex.gcs.lock();
    match *method {
        Method::GET => {
            let o = store.get(&key).ok_or_else(no_object)?;
            if find("alt") == Some("media") {
                let mut resp = Response::new(SimBody::full(o.data.clone()));
                if let Ok(v) = HeaderValue::try_from(o.content_type.as_str()) {
                    resp.headers_mut().insert(CONTENT_TYPE, v);
                }
                resp.headers_mut()
                    .insert("x-goog-generation", HeaderValue::from(o.generation));
                Ok(resp)
            } else {
                Ok(json_ok(&resource(bucket, &name, o)))
            }
        }
        Method::DELETE => {
            store.remove(&key).ok_or_else(no_object)?;
            let mut resp = Response::new(SimBody::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        _ => Err(not_found()),
    }
}

fn list<'a>(
    sim: &Simulator,
    bucket: &str,
    find: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Value, GcsError> {
    let prefix = find("prefix").unwrap_or("");
    let delimiter = find("delimiter").filter(|d| !d.is_empty());
    let max = match find("maxResults") {
        None => LIST_MAX,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n > 0 => n.min(LIST_MAX),
            _ => return Err(GcsError::invalid(format!("Invalid maxResults: {raw}"))),
        },
    };
    let after = match find("pageToken").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| GcsError::invalid("Invalid pageToken."))?,
        ),
    };
    // Entries in name order: an object, or a common prefix (once).
    let store = sim.vertex.gcs.lock();
    let mut entries: Vec<(String, Option<Value>)> = Vec::new();
    for ((b, name), o) in store.iter() {
        if b != bucket || !name.starts_with(prefix) {
            continue;
        }
        let common = delimiter.and_then(|d| {
            name[prefix.len()..]
                .find(d)
                .map(|i| name[..prefix.len() + i + d.len()].to_owned())
        });
        match common {
            Some(p) => {
                if entries.last().is_none_or(|(k, v)| v.is_some() || *k != p) {
                    entries.push((p, None));
                }
            }
            None => entries.push((name.clone(), Some(resource(b, name, o)))),
        }
    }
    drop(store);
    let rest: Vec<(String, Option<Value>)> = entries
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .collect();
    let more = rest.len() > max;
    let page: Vec<(String, Option<Value>)> = rest.into_iter().take(max).collect();
    let mut out = json!({"kind": "storage#objects"});
    if more {
        if let Some((last, _)) = page.last() {
            out["nextPageToken"] = json!(URL_SAFE_NO_PAD.encode(last));
        }
    }
    let (items, prefixes): (Vec<_>, Vec<_>) = page.into_iter().partition(|(_, v)| v.is_some());
    if !items.is_empty() {
        out["items"] = Value::Array(items.into_iter().filter_map(|(_, v)| v).collect());
    }
    if !prefixes.is_empty() {
        out["prefixes"] = Value::Array(prefixes.into_iter().map(|(k, _)| json!(k)).collect());
    }
    Ok(out)
}
