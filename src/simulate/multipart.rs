//! A small `multipart/form-data` parser (RFC 7578) for `POST /v1/files`, image edits and
//! audio uploads.
//!
//! Tolerant where real clients differ (LF or CRLF line ends, preamble, quoted or bare
//! parameters, `filename*=UTF-8''…`), strict about structure: a body without a closing
//! delimiter or a part without `Content-Disposition: form-data; name=…` is rejected.

use http::header::CONTENT_TYPE;
use http::request::Parts;
use memchr::memmem;

use super::error::ApiError;

/// One part of a form.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` parameter.
    pub name: String,
    /// The `filename` parameter, if any.
    pub filename: Option<String>,
    /// The part's bytes.
    pub data: &'a [u8],
}

/// The `boundary` parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let mut pieces = content_type.split(';');
    let mime = pieces.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let rest: String = pieces.collect::<Vec<_>>().join(";");
    param(&rest, "boundary").filter(|b| !b.is_empty() && b.len() <= 200)
}

/// Splits `body` into its parts.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let finder = memmem::Finder::new(delim);
    let mut pos = finder
        .find(body)
        .ok_or("multipart body has no boundary delimiter")?
        + delim.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        let rest = skip_line_end(rest).ok_or("malformed multipart delimiter line")?;
        let (head_len, sep_len) = header_end(rest).ok_or("multipart part without headers end")?;
        let head = std::str::from_utf8(&rest[..head_len])
            .map_err(|_| "multipart part headers are not UTF-8")?;
        let content = &rest[head_len + sep_len..];
        let end = finder
            .find(content)
            .ok_or("multipart body has no closing delimiter")?;
        let mut data = &content[..end];
        data = data
            .strip_suffix(b"\r\n")
            .or_else(|| data.strip_suffix(b"\n"))
            .unwrap_or(data);
        let (name, filename) = disposition(head)?;
        parts.push(Part {
            name,
            filename,
            data,
        });
        pos = body.len() - content.len() + end + delim.len();
    }
}

fn skip_line_end(b: &[u8]) -> Option<&[u8]> {
    // Transport padding (spaces, tabs) may follow the delimiter.
    let start = b.iter().position(|c| *c != b' ' && *c != b'\t')?;
    let b = &b[start..];
    b.strip_prefix(b"\r\n").or_else(|| b.strip_prefix(b"\n"))
}

/// Offset of the blank line ending the part headers, and its length.
fn header_end(b: &[u8]) -> Option<(usize, usize)> {
    if b.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if b.starts_with(b"\n") {
        return Some((0, 1));
    }
    let crlf = memmem::find(b, b"\r\n\r\n").map(|i| (i, 4));
    let lf = memmem::find(b, b"\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn disposition(head: &str) -> Result<(String, Option<String>), String> {
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let (kind, params) = value.split_once(';').unwrap_or((value, ""));
        if !kind.trim().eq_ignore_ascii_case("form-data") {
            return Err("multipart part is not form-data".to_owned());
        }
        let field = param(params, "name").ok_or("multipart part without a name")?;
        let filename = param(params, "filename*")
            .and_then(|v| ext_value(&v))
            .or_else(|| param(params, "filename"));
        return Ok((field, filename));
    }
    Err("multipart part without Content-Disposition".to_owned())
}

/// The value of `key` in a `; k=v; k2="v 2"` parameter list (case-insensitive key).
fn param(params: &str, key: &str) -> Option<String> {
    let mut rest = params;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            return None;
        }
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => out.push(c),
                }
            }
            value = out;
            rest = &quoted[end.min(quoted.len())..];
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            value = rest[..end].trim().to_owned();
            rest = &rest[end..];
        }
        if name.eq_ignore_ascii_case(key) {
            return Some(value);
        }
    }
}

/// Decodes an RFC 8187 extended value `UTF-8''percent%20encoded`.
fn ext_value(v: &str) -> Option<String> {
    let (charset, rest) = v.split_once('\'')?;
    let (_lang, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    String::from_utf8(percent_decode(encoded)).ok()
}

/// Decodes `%XX` escapes (and nothing else).
pub fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && b[i + 1].is_ascii_hexdigit()
            && b[i + 2].is_ascii_hexdigit()
        {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            out.push(hex(b[i + 1]) << 4 | hex(b[i + 2]));
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// A parsed `multipart/form-data` body.
pub struct Form<'a>(pub Vec<Part<'a>>);

impl<'a> Form<'a> {
    pub fn from_request(parts: &Parts, body: &'a [u8]) -> Result<Form<'a>, ApiError> {
        let content_type = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = boundary(content_type).ok_or_else(|| {
            ApiError::invalid(
                format!(
                    "Invalid Content-Type header ({content_type}), expected multipart/form-data with a boundary."
                ),
                None,
                None,
            )
        })?;
        parse(body, &boundary).map(Form).map_err(|e| {
            ApiError::invalid(format!("Could not parse multipart form: {e}"), None, None)
        })
    }

    /// A text field, trimmed.
    pub fn text(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|p| p.name == name)
            .map(|p| String::from_utf8_lossy(p.data).trim().to_owned())
    }

    pub fn part(&self, name: &str) -> Option<&Part<'a>> {
        self.0.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_bare_and_quoted() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----x").as_deref(),
            Some("----x")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=\"a b\"; charset=utf-8").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn parses_crlf_and_lf_bodies() {
        let body = b"preamble\r\n------x\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n------x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{\"a\":1}\n{\"b\":2}\n\r\n------x--\r\n";
        let parts = parse(body, "----x").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "purpose");
        assert_eq!(parts[0].data, b"batch");
        assert_eq!(parts[1].filename.as_deref(), Some("a.jsonl"));
        assert_eq!(parts[1].data, b"{\"a\":1}\n{\"b\":2}\n");

        let lf = b"--b\nContent-Disposition: form-data; name=file; filename*=UTF-8''r%C3%A9.jsonl\n\nxyz\n--b--";
        let parts = parse(lf, "b").unwrap();
        assert_eq!(parts[0].filename.as_deref(), Some("ré.jsonl"));
        assert_eq!(parts[0].data, b"xyz");
    }

    #[test]
    fn rejects_broken_bodies() {
        assert!(parse(b"no delimiter", "b").is_err());
        assert!(
            parse(
                b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunterminated",
                "b"
            )
            .is_err()
        );
        assert!(parse(b"--b\r\nX-Other: 1\r\n\r\nv\r\n--b--", "b").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%zz%4"), b"a b%zz%4");
    }
}
