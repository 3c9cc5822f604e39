//! Gemini File API (reference 3.3), in memory: resumable upload (`start`, then `upload`
//! chunks at the running `X-Goog-Upload-Offset`, `finalize`; also `query` and `cancel`),
//! `GET files/{id}`, `GET files?pageSize=&pageToken=`, `DELETE files/{id}`, and the
//! download of generated files at `GET /download/{v1beta,v1}/files/{id}:download?alt=media`
//! and `GET {v1beta,v1}/files/{id}:download?alt=media`.
//!
//! Uploaded files live [`super::gemini::GeminiConfig::file_ttl`] (48 h) from creation, by
//! `tokio::time::Instant` (tests with paused time control it), then answer 404. Generated
//! files (batch results, `source: GENERATED`, with a `downloadUri`) live six weeks (the
//! batch-result retention of reference 3.4).
//!
//! UNCONFIRMED, decided strictly: downloading an uploaded file answers 400
//! `FAILED_PRECONDITION`; `:download` without `alt=media` answers 400; the download's
//! `Content-Type` is the file's `mimeType`; a start without `X-Goog-Upload-Protocol:
//! resumable` answers 400 (multipart and media uploads are not simulated); list order is
//! newest first, `pageSize` defaults to 10 and is capped at 100.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::request::Parts;
use http::{Method, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::Simulator;
use super::anthropic_batch::rfc3339;
use super::body::SimBody;
use super::files::query_params;
use super::gemini::{self, GemError, json_response};
use super::gemini_content::{Fields, get, int, object, parse_body, string};

/// How long generated files (batch results) are kept.
pub const GENERATED_TTL: Duration = Duration::from_secs(42 * 86_400);

/// Chunk granularity announced at upload start (the SDK's 8 MiB).
const GRANULARITY: &str = "8388608";

/// Fields of the `File` message (all accepted at upload start; `name`, `displayName` and
/// `mimeType` are used).
const FILE: Fields = &[
    ("createTime", "create_time"),
    ("displayName", "display_name"),
    ("downloadUri", "download_uri"),
    ("error", "error"),
    ("expirationTime", "expiration_time"),
    ("mimeType", "mime_type"),
    ("name", "name"),
    ("sha256Hash", "sha256_hash"),
    ("sizeBytes", "size_bytes"),
    ("source", "source"),
    ("state", "state"),
    ("updateTime", "update_time"),
    ("uri", "uri"),
    ("videoMetadata", "video_metadata"),
];

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[derive(Debug)]
struct StoredFile {
    seq: u64,
    name: String,
    display_name: Option<String>,
    mime_type: String,
    content: Bytes,
    created_ms: u64,
    start: Instant,
    ttl: Duration,
    generated: bool,
}

impl StoredFile {
    fn alive(&self) -> bool {
        self.start.elapsed() < self.ttl
    }

    fn object(&self, host: &str) -> Value {
        let id = self.name.strip_prefix("files/").unwrap_or(&self.name);
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let created = rfc3339(self.created_ms);
        let mut f = json!({
            "name": self.name,
            "mimeType": self.mime_type,
            "createTime": created,
            "updateTime": created,
            "expirationTime": rfc3339(self.created_ms.saturating_add(ttl_ms)),
            "sha256Hash": STANDARD.encode(Sha256::digest(&self.content)),
            "uri": format!("http://{host}/v1beta/files/{id}"),
            "state": "ACTIVE",
            "source": if self.generated { "GENERATED" } else { "UPLOADED" },
        });
        if let Some(d) = self.display_name.as_deref().filter(|d| !d.is_empty()) {
            f["displayName"] = json!(d);
        }
        if !self.content.is_empty() {
            f["sizeBytes"] = json!(self.content.len().to_string());
        }
        if self.generated {
            f["downloadUri"] = json!(format!(
                "http://{host}/download/v1beta/files/{id}:download?alt=media"
            ));
        }
        f
    }
}

#[derive(Debug)]
struct Session {
    name: String,
    display_name: Option<String>,
    mime_type: String,
    declared: Option<u64>,
    data: Vec<u8>,
}

/// Files and open upload sessions.
#[derive(Debug, Default)]
pub struct FileStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    files: HashMap<String, StoredFile>,
    sessions: HashMap<String, Session>,
}

impl Inner {
    /// The live file `name`, dropping it if it has expired.
    fn live(&mut self, name: &str) -> Option<&StoredFile> {
        if self.files.get(name).is_some_and(|f| !f.alive()) {
            self.files.remove(name);
        }
        self.files.get(name)
    }

    fn taken(&self, name: &str) -> bool {
        self.files.get(name).is_some_and(StoredFile::alive)
            || self.sessions.values().any(|s| s.name == name)
    }
}

impl FileStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Content of the live file `name` and how long it still lives.
    pub fn content(&self, name: &str) -> Option<(Bytes, Duration)> {
        let mut inner = self.lock();
        inner
            .live(name)
            .map(|f| (f.content.clone(), f.ttl.saturating_sub(f.start.elapsed())))
    }

    /// Stores a generated (downloadable) file.
    pub fn insert_generated(&self, seq: u64, name: String, mime_type: &str, content: Bytes) {
        let file = StoredFile {
            seq,
            name: name.clone(),
            display_name: None,
            mime_type: mime_type.to_owned(),
            content,
            created_ms: unix_ms(),
            start: Instant::now(),
            ttl: GENERATED_TTL,
            generated: true,
        };
        self.lock().files.insert(name, file);
    }
}

/// A File API route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRoute {
    /// `POST /upload/{version}/files` (start a resumable upload).
    Start(&'static str),
    /// `POST /upload/{version}/files?upload_id=…` (a chunk, finalize, query or cancel).
    Chunk(String),
    /// `GET files`
    List,
    /// `GET files/{id}`
    Get(String),
    /// `DELETE files/{id}`
    Delete(String),
    /// `GET files/{id}:download` (also below `/download/`).
    Download(String),
}

/// Routes `rest` (the path after the version): `None` if it is not a files path,
/// `Some(None)` for a files path with the wrong method or shape.
pub fn route(method: &Method, rest: &str) -> Option<Option<FileRoute>> {
    if rest == "files" {
        return Some((*method == Method::GET).then_some(FileRoute::List));
    }
    let id = rest.strip_prefix("files/")?;
    if id.is_empty() || id.contains('/') {
        return Some(None);
    }
    Some(match (method, id.strip_suffix(":download")) {
        (&Method::GET, Some(id)) if !id.is_empty() => Some(FileRoute::Download(id.to_owned())),
        (_, Some(_)) => None,
        (_, None) if id.contains(':') => None,
        (&Method::GET, None) => Some(FileRoute::Get(id.to_owned())),
        (&Method::DELETE, None) => Some(FileRoute::Delete(id.to_owned())),
        _ => None,
    })
}

/// Answers one File API request.
pub fn handle(
    sim: &Simulator,
    route: FileRoute,
    parts: &Parts,
    body: &Bytes,
    seq: u64,
) -> Result<Response<SimBody>, GemError> {
    let host = gemini::host(parts);
    let store = &sim.gemini.files;
    match route {
        FileRoute::Start(version) => start(sim, version, parts, body, seq, &host),
        FileRoute::Chunk(id) => chunk(sim, &id, parts, body, seq, &host),
        FileRoute::Get(id) => {
            let name = format!("files/{id}");
            let mut inner = store.lock();
            let file = inner.live(&name).ok_or_else(|| no_such_file(&name))?;
            Ok(json_response(&file.object(&host)))
        }
        FileRoute::Delete(id) => {
            let name = format!("files/{id}");
            let mut inner = store.lock();
            inner.live(&name).ok_or_else(|| no_such_file(&name))?;
            inner.files.remove(&name);
            Ok(json_response(&json!({})))
        }
        FileRoute::Download(id) => download(sim, &id, parts),
        FileRoute::List => {
            let (size, after) = page_params(parts.uri.query())?;
            let mut inner = store.lock();
            inner.files.retain(|_, f| f.alive());
            let items: Vec<(u64, Value)> = inner
                .files
                .values()
                .map(|f| (f.seq, f.object(&host)))
                .collect();
            drop(inner);
            let (page, next) = page(items, size, after);
            let mut out = json!({});
            if !page.is_empty() {
                out["files"] = Value::Array(page);
            }
            if let Some(t) = next {
                out["nextPageToken"] = json!(t);
            }
            Ok(json_response(&out))
        }
    }
}

fn no_such_file(name: &str) -> GemError {
    GemError::not_found(format!(
        "File {name} not found (or it expired, or you do not have permission to access it)."
    ))
}

/// `pageSize` (default 10, capped at 100) and the decoded `pageToken`.
pub fn page_params(query: Option<&str>) -> Result<(usize, Option<u64>), GemError> {
    let params = query_params(query);
    let find = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let size = match find("pageSize").or_else(|| find("page_size")) {
        None => 10,
        Some(raw) => {
            let n = int(&json!(raw), "page_size", "TYPE_INT32")?;
            match n {
                0 => 10,
                n if n < 0 => return Err(GemError::invalid("page_size must not be negative.")),
                n => usize::try_from(n).unwrap_or(100).min(100),
            }
        }
    };
    let after = match find("pageToken").or_else(|| find("page_token")) {
        None => None,
        Some(t) if t.is_empty() => None,
        Some(t) => Some(
            URL_SAFE_NO_PAD
                .decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.strip_prefix("after:").and_then(|n| n.parse().ok()))
                .ok_or_else(|| GemError::invalid("Invalid page token."))?,
        ),
    };
    Ok((size, after))
}

/// Newest first: the `size` items created before `after` (all when `None`), and the
/// token of the next page when more remain.
pub fn page(
    mut items: Vec<(u64, Value)>,
    size: usize,
    after: Option<u64>,
) -> (Vec<Value>, Option<String>) {
    items.sort_by_key(|b| std::cmp::Reverse(b.0));
    let rest: Vec<(u64, Value)> = items
        .into_iter()
        .filter(|(seq, _)| after.is_none_or(|a| *seq < a))
        .collect();
    let more = rest.len() > size;
    let page: Vec<(u64, Value)> = rest.into_iter().take(size).collect();
    let next = if more {
        page.last()
            .map(|(seq, _)| URL_SAFE_NO_PAD.encode(format!("after:{seq}")))
    } else {
        None
    };
    (page.into_iter().map(|(_, v)| v).collect(), next)
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// A file id of `[a-z0-9-]{1,40}`, not starting or ending with `-`.
fn valid_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-')
}

fn with_upload_headers(
    mut resp: Response<SimBody>,
    pairs: &[(&'static str, String)],
) -> Response<SimBody> {
    let h = resp.headers_mut();
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::try_from(value.as_str()) {
            h.insert(*name, v);
        }
    }
    resp
}

fn empty_response() -> Response<SimBody> {
    let mut resp = Response::new(SimBody::empty());
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn start(
    sim: &Simulator,
    version: &str,
    parts: &Parts,
    body: &[u8],
    seq: u64,
    host: &str,
) -> Result<Response<SimBody>, GemError> {
    if !header(parts, "x-goog-upload-protocol").is_some_and(|p| p.eq_ignore_ascii_case("resumable"))
    {
        return Err(GemError::invalid(
            "The simulator supports resumable uploads only: send X-Goog-Upload-Protocol: resumable.",
        ));
    }
    if !header(parts, "x-goog-upload-command").is_some_and(|c| c.eq_ignore_ascii_case("start")) {
        return Err(GemError::invalid(
            "A resumable upload starts with X-Goog-Upload-Command: start.",
        ));
    }
    let max = sim.config.gemini.file_max_bytes;
    let declared = match header(parts, "x-goog-upload-header-content-length") {
        None => None,
        Some(v) => Some(v.parse::<u64>().map_err(|_| {
            GemError::invalid(format!(
                "Invalid X-Goog-Upload-Header-Content-Length: '{v}'."
            ))
        })?),
    };
    if declared.is_some_and(|n| n > max) {
        return Err(file_too_large(max));
    }
    let value = parse_body(body)?;
    let top = object(&value, "", &[("file", "file")])?;
    let file = get(top, ("file", "file"))
        .map(|f| object(f, "file", FILE))
        .transpose()?;
    let field = |pair: (&str, &str), at: &str| -> Result<Option<String>, GemError> {
        file.and_then(|f| get(f, pair))
            .map(|v| string(v, at).map(str::to_owned))
            .transpose()
    };
    let display_name = field(("displayName", "display_name"), "file.display_name")?;
    let mime_type = match header(parts, "x-goog-upload-header-content-type") {
        Some(m) if !m.is_empty() => m.to_owned(),
        _ => field(("mimeType", "mime_type"), "file.mime_type")?
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
    };
    let mut inner = sim.gemini.files.lock();
    let name = match field(("name", "name"), "file.name")? {
        Some(n) => {
            let id = n.strip_prefix("files/").unwrap_or(&n);
            if !valid_id(id) {
                return Err(GemError::invalid(format!(
                    "Invalid file name '{n}': the id must be 1 to 40 characters of [a-z0-9-], not starting or ending with '-'."
                )));
            }
            let name = format!("files/{id}");
            if inner.taken(&name) {
                return Err(GemError::already_exists(format!(
                    "File {name} already exists."
                )));
            }
            name
        }
        None => format!("files/s{}{seq}", sim.tag),
    };
    let upload_id = format!("sim-{}-{seq}", sim.tag);
    inner.sessions.insert(
        upload_id.clone(),
        Session {
            name,
            display_name,
            mime_type,
            declared,
            data: Vec::new(),
        },
    );
    let url = format!(
        "http://{host}/upload/{version}/files?upload_id={upload_id}&upload_protocol=resumable"
    );
    Ok(with_upload_headers(
        empty_response(),
        &[
            ("x-goog-upload-url", url.clone()),
            ("x-goog-upload-control-url", url),
            ("x-goog-upload-status", "active".to_owned()),
            ("x-goog-upload-chunk-granularity", GRANULARITY.to_owned()),
        ],
    ))
}

fn file_too_large(max: u64) -> GemError {
    GemError::invalid(format!(
        "File is too large: the maximum size is {max} bytes."
    ))
}

fn chunk(
    sim: &Simulator,
    upload_id: &str,
    parts: &Parts,
    body: &Bytes,
    seq: u64,
    host: &str,
) -> Result<Response<SimBody>, GemError> {
    let command = header(parts, "x-goog-upload-command")
        .unwrap_or("")
        .to_ascii_lowercase();
    let has = |c: &str| command.split(',').any(|t| t.trim() == c);
    let mut inner = sim.gemini.files.lock();
    let session = inner
        .sessions
        .get_mut(upload_id)
        .ok_or_else(|| GemError::not_found(format!("Upload session {upload_id} not found.")))?;
    if has("cancel") {
        inner.sessions.remove(upload_id);
        return Ok(with_upload_headers(
            empty_response(),
            &[("x-goog-upload-status", "cancelled".to_owned())],
        ));
    }
    let received = |n: usize| ("x-goog-upload-size-received", n.to_string());
    if has("query") {
        return Ok(with_upload_headers(
            empty_response(),
            &[
                ("x-goog-upload-status", "active".to_owned()),
                received(session.data.len()),
            ],
        ));
    }
    let (upload, finalize) = (has("upload"), has("finalize"));
    if !upload && !finalize {
        return Err(GemError::invalid(
            "X-Goog-Upload-Command must be 'upload', 'upload, finalize', 'finalize', 'query' or 'cancel'.",
        ));
    }
    if upload {
        let offset = header(parts, "x-goog-upload-offset")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| GemError::invalid("X-Goog-Upload-Offset is required with 'upload'."))?;
        let have = session.data.len() as u64;
        if offset != have {
            return Err(GemError::invalid(format!(
                "Invalid X-Goog-Upload-Offset {offset}: the session has received {have} bytes."
            )));
        }
        let max = sim.config.gemini.file_max_bytes;
        if have + body.len() as u64 > max {
            inner.sessions.remove(upload_id);
            return Err(file_too_large(max));
        }
        session.data.extend_from_slice(body);
    } else if !body.is_empty() {
        return Err(GemError::invalid(
            "A 'finalize' without 'upload' carries no bytes.",
        ));
    }
    if !finalize {
        let n = session.data.len();
        return Ok(with_upload_headers(
            empty_response(),
            &[("x-goog-upload-status", "active".to_owned()), received(n)],
        ));
    }
    let size = session.data.len() as u64;
    if let Some(declared) = session.declared.filter(|d| *d != size) {
        return Err(GemError::invalid(format!(
            "The upload was finalized with {size} bytes, but X-Goog-Upload-Header-Content-Length announced {declared}."
        )));
    }
    let Some(session) = inner.sessions.remove(upload_id) else {
        return Err(GemError::not_found(format!(
            "Upload session {upload_id} not found."
        )));
    };
    let file = StoredFile {
        seq,
        name: session.name.clone(),
        display_name: session.display_name,
        mime_type: session.mime_type,
        content: Bytes::from(session.data),
        created_ms: unix_ms(),
        start: Instant::now(),
        ttl: sim.config.gemini.file_ttl,
        generated: false,
    };
    let object = file.object(host);
    inner.files.insert(session.name, file);
    Ok(with_upload_headers(
        json_response(&json!({ "file": object })),
        &[("x-goog-upload-status", "final".to_owned())],
    ))
}

fn download(sim: &Simulator, id: &str, parts: &Parts) -> Result<Response<SimBody>, GemError> {
    let media = query_params(parts.uri.query())
        .iter()
        .any(|(k, v)| k == "alt" && v == "media");
    let name = format!("files/{id}");
    let mut inner = sim.gemini.files.lock();
    let file = inner.live(&name).ok_or_else(|| no_such_file(&name))?;
    if !file.generated {
        return Err(GemError::failed_precondition(format!(
            "Only generated files can be downloaded; {name} was uploaded."
        )));
    }
    if !media {
        return Err(GemError::invalid(
            "Downloading a file needs the query parameter alt=media.",
        ));
    }
    let mut resp = Response::new(SimBody::full(file.content.clone()));
    let mime = HeaderValue::try_from(file.mime_type.as_str())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    resp.headers_mut().insert(CONTENT_TYPE, mime);
    Ok(resp)
}
