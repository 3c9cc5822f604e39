//! `SLUICE_STORE` URLs: which backend a URL names, and how to print one safely.

use super::{Result, StoreError};

/// The backends a store URL can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    Sqlite,
    Postgres,
}

const EXPECTED: &str = "expected sqlite://PATH (e.g. sqlite://sluice.db) or postgres://...";

/// The backend `url` names; anything that is not `scheme:rest` with a known scheme fails.
/// Messages leave the URL out: the caller names it, redacted.
pub(super) fn scheme(url: &str) -> Result<Scheme> {
    let scheme = url
        .split_once(':')
        .map(|(s, _)| s)
        .filter(|s| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
        .ok_or_else(|| StoreError::InvalidUrl(format!("no scheme: {EXPECTED}")))?;
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Ok(Scheme::Sqlite),
        "postgres" | "postgresql" => Ok(Scheme::Postgres),
        _ => Err(StoreError::UnsupportedUrl(format!(
            "unknown scheme {scheme:?}: {EXPECTED}"
        ))),
    }
}

/// `url` with the password of its `user:password@` part, if any, replaced by `***`: store
/// URLs end up in logs and error messages.
pub fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("sqlite://sluice.db").unwrap(), Scheme::Sqlite);
        assert_eq!(scheme("sqlite::memory:").unwrap(), Scheme::Sqlite);
        assert_eq!(scheme("SQLite:x.db").unwrap(), Scheme::Sqlite);
        assert_eq!(scheme("postgres://h/db").unwrap(), Scheme::Postgres);
        assert_eq!(scheme("postgresql://h/db").unwrap(), Scheme::Postgres);
        for not_a_url in [
            "sluice.db",
            "/var/lib/sluice.db",
            "",
            "://x",
            "1x:y",
            "a b:c",
        ] {
            let e = scheme(not_a_url).unwrap_err();
            assert!(matches!(e, StoreError::InvalidUrl(_)), "{not_a_url}: {e}");
            assert!(e.to_string().contains("no scheme"), "{e}");
        }
        let e = scheme("mysql://u:secret@h/db").unwrap_err();
        assert!(matches!(e, StoreError::UnsupportedUrl(_)), "{e}");
        assert!(e.to_string().contains("unknown scheme \"mysql\""), "{e}");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redacted("postgres://sluice:s3cr@t@db:5432/sluice?sslmode=require"),
            "postgres://sluice:***@db:5432/sluice?sslmode=require"
        );
        assert_eq!(redacted("postgres://sluice@db/x"), "postgres://sluice@db/x");
        assert_eq!(redacted("postgres://db/x@y"), "postgres://db/x@y");
        assert_eq!(redacted("sqlite://sluice.db"), "sqlite://sluice.db");
        assert_eq!(redacted("sqlite:a:b@c"), "sqlite:a:b@c");
    }
}
