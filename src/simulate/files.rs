//! Files API (reference 1.7): multipart upload, metadata, raw content, delete and list,
//! all held in memory. Batch results are stored here too (purpose `batch_output`).

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use http::Method;
use http::request::Parts;
use serde::Serialize;

use super::body::Reply;
use super::error::ApiError;
use super::multipart::{self, percent_decode};
use super::{Simulator, unix_now};

/// Purposes a client may upload with.
pub const PURPOSES: [&str; 6] = [
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
];

/// Largest accepted file (512 MB).
pub const MAX_FILE_BYTES: usize = 512 * 1024 * 1024;

/// Default lifetime of `batch` and `batch_output` files (30 days).
pub const BATCH_FILE_TTL: u64 = 30 * 86_400;

/// Bounds of `expires_after[seconds]` / `output_expires_after.seconds`.
pub const EXPIRY_RANGE: std::ops::RangeInclusive<u64> = 3_600..=2_592_000;

/// The `File` object.
#[derive(Debug, Clone, Serialize)]
pub struct FileObject {
    /// `file-sim…`.
    pub id: String,
    /// Always `file`.
    pub object: &'static str,
    /// Size of the content.
    pub bytes: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, or null for files that never expire.
    pub expires_at: Option<u64>,
    /// As uploaded.
    pub filename: String,
    /// `batch`, `batch_output`, …
    pub purpose: String,
    /// Always `processed` (deprecated field, still required).
    pub status: &'static str,
    /// Always null (deprecated).
    pub status_details: Option<String>,
}

#[derive(Debug)]
struct Stored {
    seq: u64,
    meta: FileObject,
    content: Bytes,
}

/// In-memory file storage.
#[derive(Debug, Default)]
pub struct FileStore {
    files: Mutex<HashMap<String, Stored>>,
}

impl FileStore {
    /// Stores a file under `seq` (creation order) and returns its object.
    pub fn insert(&self, seq: u64, meta: FileObject, content: Bytes) -> FileObject {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.insert(
            meta.id.clone(),
            Stored {
                seq,
                meta: meta.clone(),
                content,
            },
        );
        meta
    }

    /// Metadata and content of a file.
    pub fn get(&self, id: &str) -> Option<(FileObject, Bytes)> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.get(id).map(|s| (s.meta.clone(), s.content.clone()))
    }

    fn remove(&self, id: &str) -> bool {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.remove(id).is_some()
    }

    fn list(&self, purpose: Option<&str>) -> Vec<(u64, FileObject)> {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files
            .values()
            .filter(|s| purpose.is_none_or(|p| s.meta.purpose == p))
            .map(|s| (s.seq, s.meta.clone()))
            .collect()
    }
}

/// A Files API route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRoute<'a> {
    /// `GET /v1/files`
    List,
    /// `POST /v1/files`
    Upload,
    /// `GET /v1/files/{id}`
    Get(&'a str),
    /// `GET /v1/files/{id}/content`
    Content(&'a str),
    /// `DELETE /v1/files/{id}`
    Delete(&'a str),
}

/// Routes a path below `/v1/files`, or `None` if it is not one.
pub fn route<'a>(method: &Method, path: &'a str) -> Option<Result<FileRoute<'a>, ApiError>> {
    let rest = path.strip_prefix("/v1/files")?;
    let routed = match rest.strip_prefix('/') {
        None if rest.is_empty() => match *method {
            Method::GET => Ok(FileRoute::List),
            Method::POST => Ok(FileRoute::Upload),
            _ => Err(()),
        },
        None => return None,
        Some(id) => match id.split_once('/') {
            None if !id.is_empty() => match *method {
                Method::GET => Ok(FileRoute::Get(id)),
                Method::DELETE => Ok(FileRoute::Delete(id)),
                _ => Err(()),
            },
            Some((id, "content")) if !id.is_empty() => match *method {
                Method::GET => Ok(FileRoute::Content(id)),
                _ => Err(()),
            },
            _ => return Some(Err(ApiError::not_found(method, path))),
        },
    };
    Some(routed.map_err(|()| ApiError::method_not_allowed(method, path)))
}

/// Answers one Files API request.
pub fn handle(
    sim: &Simulator,
    route: FileRoute<'_>,
    parts: &Parts,
    body: &Bytes,
    seq: u64,
) -> Result<Reply, ApiError> {
    match route {
        FileRoute::Upload => upload(sim, parts, body, seq),
        FileRoute::Get(id) => Reply::json(&lookup(sim, id)?.0),
        FileRoute::Content(id) => Ok(Reply::Raw(lookup(sim, id)?.1)),
        FileRoute::Delete(id) => {
            if !sim.files.remove(id) {
                return Err(no_such_file(id));
            }
            Reply::json(&serde_json::json!({"id": id, "object": "file", "deleted": true}))
        }
        FileRoute::List => list(sim, parts.uri.query()),
    }
}

fn no_such_file(id: &str) -> ApiError {
    ApiError::no_such(format!("No such File object: {id}"), "id")
}

fn lookup(sim: &Simulator, id: &str) -> Result<(FileObject, Bytes), ApiError> {
    sim.files.get(id).ok_or_else(|| no_such_file(id))
}

fn upload(sim: &Simulator, parts: &Parts, body: &Bytes, seq: u64) -> Result<Reply, ApiError> {
    let form = multipart::Form::from_request(parts, body)?;
    let text = |name: &str| form.text(name);
    let purpose = text("purpose").ok_or_else(|| ApiError::missing("purpose"))?;
    if !PURPOSES.contains(&purpose.as_str()) {
        return Err(ApiError::invalid(
            format!(
                "'{purpose}' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals'] - 'purpose'"
            ),
            Some("purpose"),
            Some("invalid_value"),
        ));
    }
    let file = form.part("file").ok_or_else(|| ApiError::missing("file"))?;
    let filename = file.filename.clone().ok_or_else(|| {
        ApiError::invalid(
            "Invalid 'file': expected a file upload (a part with a filename).",
            Some("file"),
            Some("invalid_type"),
        )
    })?;
    if file.data.len() > MAX_FILE_BYTES {
        return Err(ApiError::invalid(
            format!(
                "File is too large: {} bytes. The maximum size is 512 MB.",
                file.data.len()
            ),
            Some("file"),
            Some("file_too_large"),
        ));
    }
    if purpose == "batch" && !filename.to_ascii_lowercase().ends_with(".jsonl") {
        return Err(ApiError::invalid(
            "Invalid file format for Batch API. Must be .jsonl",
            Some("file"),
            Some("invalid_file_format"),
        ));
    }
    let ttl = expiry(
        text("expires_after[anchor]"),
        text("expires_after[seconds]"),
    )?
    .or((purpose == "batch").then_some(BATCH_FILE_TTL));
    let created_at = unix_now();
    let meta = FileObject {
        id: format!("file-sim{}{seq}", sim.tag),
        object: "file",
        bytes: file.data.len() as u64,
        created_at,
        expires_at: ttl.map(|t| created_at + t),
        filename,
        purpose,
        status: "processed",
        status_details: None,
    };
    let content = body.slice_ref(file.data);
    Reply::json(&sim.files.insert(seq, meta, content))
}

fn expiry(anchor: Option<String>, seconds: Option<String>) -> Result<Option<u64>, ApiError> {
    if anchor.is_none() && seconds.is_none() {
        return Ok(None);
    }
    if anchor.as_deref() != Some("created_at") {
        return Err(ApiError::invalid(
            "Invalid 'expires_after[anchor]': expected 'created_at'.",
            Some("expires_after[anchor]"),
            Some("invalid_value"),
        ));
    }
    match seconds.and_then(|s| s.parse::<u64>().ok()) {
        Some(s) if EXPIRY_RANGE.contains(&s) => Ok(Some(s)),
        _ => Err(ApiError::invalid(
            "Invalid 'expires_after[seconds]': expected an integer between 3600 and 2592000.",
            Some("expires_after[seconds]"),
            Some("invalid_value"),
        )),
    }
}

/// Decoded `key=value` pairs of a query string.
pub fn query_params(query: Option<&str>) -> Vec<(String, String)> {
    let decode =
        |s: &str| String::from_utf8_lossy(&percent_decode(&s.replace('+', " "))).into_owned();
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Parses an optional integer query parameter within `range`.
pub fn limit_param(
    params: &[(String, String)],
    range: std::ops::RangeInclusive<usize>,
    default: usize,
) -> Result<usize, ApiError> {
    let Some((_, raw)) = params.iter().find(|(k, _)| k == "limit") else {
        return Ok(default);
    };
    match raw.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            format!(
                "Invalid 'limit': expected an integer between {} and {}, got '{raw}'.",
                range.start(),
                range.end()
            ),
            Some("limit"),
            Some("invalid_value"),
        )),
    }
}

#[derive(Serialize)]
struct Page<'a, T> {
    object: &'static str,
    data: &'a [T],
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

/// A cursor page `{"object":"list","data","first_id","last_id","has_more"}` over `items`
/// (already in answer order): the items after `after` (all when `None`), at most `limit`.
pub fn page<T: Serialize>(
    items: &[T],
    id_of: impl Fn(&T) -> &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Reply, ApiError> {
    let start = match after {
        Some(a) => items
            .iter()
            .position(|i| id_of(i) == a)
            .map_or(items.len(), |p| p + 1),
        None => 0,
    };
    let rest = &items[start.min(items.len())..];
    let data = &rest[..limit.min(rest.len())];
    Reply::json(&Page {
        object: "list",
        data,
        first_id: data.first().map(&id_of),
        last_id: data.last().map(&id_of),
        has_more: rest.len() > data.len(),
    })
}

fn list(sim: &Simulator, query: Option<&str>) -> Result<Reply, ApiError> {
    let params = query_params(query);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let limit = limit_param(&params, 1..=10_000, 10_000)?;
    let desc = match get("order") {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                format!("Invalid 'order': expected 'asc' or 'desc', got '{other}'."),
                Some("order"),
                Some("invalid_value"),
            ));
        }
    };
    let mut files = sim.files.list(get("purpose"));
    files.sort_by_key(|(seq, _)| *seq);
    if desc {
        files.reverse();
    }
    let files: Vec<FileObject> = files.into_iter().map(|(_, f)| f).collect();
    page(&files, |f| f.id.as_str(), get("after"), limit)
}
