//! The Cloud Storage JSON API calls batch prediction needs (provider-apis.md 3.6): a media
//! upload streamed from the store, a prefix listing, a streamed download. Every call takes
//! an [`Http`] already carrying the bearer token; object names are percent-encoded.

use bytes::Bytes;
use http::Method;
use serde::Deserialize;

use crate::providers::{BatchApiError, FileChunks, Http, ResultBody};

/// Pages of a listing read at most (1,000 names each): a job writes a handful of files.
const MAX_LIST_PAGES: usize = 20;

/// `gs://bucket/object`.
pub fn uri(bucket: &str, object: &str) -> String {
    format!("gs://{bucket}/{object}")
}

/// `gs://bucket/object` → (`bucket`, `object`).
pub fn parse_uri(uri: &str) -> Option<(&str, &str)> {
    let (bucket, object) = uri.strip_prefix("gs://")?.split_once('/')?;
    (!bucket.is_empty()).then_some((bucket, object))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (so `/` is `%2F`, as
/// object names in paths need).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Uploads `chunks` as `bucket/object` in one streamed media upload. A resumable upload
/// would survive a dropped connection on a 1 GB input, but whether Vertex inputs need it
/// is UNCONFIRMED and a failed media upload is simply redone from the store.
pub async fn upload(
    http: &Http,
    bucket: &str,
    object: &str,
    chunks: FileChunks,
) -> Result<(), BatchApiError> {
    let path = format!(
        "/upload/storage/v1/b/{}/o?uploadType=media&name={}",
        encode(bucket),
        encode(object)
    );
    let answer = http
        .stream(
            Method::POST,
            &path,
            Bytes::new(),
            chunks,
            Bytes::new(),
            "application/jsonl",
        )
        .await?;
    #[derive(Deserialize)]
    struct Object {
        name: String,
    }
    let o: Object =
        serde_json::from_slice(&answer).map_err(|e| http.decode_error(e.to_string()))?;
    if o.name != object {
        return Err(http.decode_error(format!(
            "Cloud Storage stored {:?} for an upload of {object:?}",
            o.name
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ObjectList {
    /// Absent when nothing matches.
    #[serde(default)]
    items: Vec<ListedObject>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct ListedObject {
    name: String,
}

/// The names of the objects under `prefix`, in name order.
pub async fn list(http: &Http, bucket: &str, prefix: &str) -> Result<Vec<String>, BatchApiError> {
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_LIST_PAGES {
        let mut path = format!(
            "/storage/v1/b/{}/o?prefix={}",
            encode(bucket),
            encode(prefix)
        );
        if let Some(t) = &token {
            path.push_str(&format!("&pageToken={}", encode(t)));
        }
        let page: ObjectList = http.json(Method::GET, &path, Bytes::new()).await?;
        names.extend(page.items.into_iter().map(|o| o.name));
        match page.next_page_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(names),
        }
    }
    Err(http.decode_error(format!(
        "more than {MAX_LIST_PAGES} pages of objects under gs://{bucket}/{prefix}"
    )))
}

/// An object's bytes, as a stream.
pub async fn download(
    http: &Http,
    bucket: &str,
    object: &str,
) -> Result<ResultBody, BatchApiError> {
    http.download(&format!(
        "/storage/v1/b/{}/o/{}?alt=media",
        encode(bucket),
        encode(object)
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_encoding() {
        assert_eq!(
            parse_uri("gs://b/out/f/prediction-model-x/predictions.jsonl"),
            Some(("b", "out/f/prediction-model-x/predictions.jsonl"))
        );
        assert_eq!(parse_uri("gs://b"), None);
        assert_eq!(parse_uri("https://b/o"), None);
        assert_eq!(uri("b", "a/c"), "gs://b/a/c");
        assert_eq!(
            encode("out/p-2026-01-01T00:00:00.000Z/a b"),
            "out%2Fp-2026-01-01T00%3A00%3A00.000Z%2Fa%20b"
        );
    }
}
