//! What a `sqlite:` URL opens, checked before SQLite touches the disk.
//!
//! SQLite's own `mode` parameter says what may be created:
//! - none (`sqlite://sluice.db`): the file is created if missing, but its directory must
//!   exist — a typo in the path fails instead of silently starting an empty store elsewhere;
//! - `mode=rwc`: the explicit request to create, so missing directories are created too;
//! - `mode=rw`: the file must already exist;
//! - `mode=memory` or `sqlite::memory:`: in memory (tests);
//! - `mode=ro`: refused — the gateway writes.

use std::path::Path;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

use crate::store::{Result, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Default,
    ReadWrite,
    Create,
    Memory,
}

fn invalid(reason: String) -> StoreError {
    StoreError::InvalidUrl(reason)
}

/// The last `mode=` of the URL's query.
fn mode(url: &str) -> Result<Mode> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let mut mode = Mode::Default;
    for value in query.split('&').filter_map(|kv| kv.strip_prefix("mode=")) {
        mode = match value {
            "rw" => Mode::ReadWrite,
            "rwc" => Mode::Create,
            "memory" => Mode::Memory,
            "ro" => return Err(invalid("mode=ro: the store must be writable".into())),
            other => {
                return Err(invalid(format!(
                    "unknown mode {other:?} (expected rw, rwc or memory)"
                )));
            }
        };
    }
    Ok(mode)
}

/// Connect options for `url`, after checking that its file can be opened as asked (and,
/// with `mode=rwc`, creating its directory).
pub(super) fn options(url: &str) -> Result<SqliteConnectOptions> {
    let mode = mode(url)?;
    let options = SqliteConnectOptions::from_str(url).map_err(|e| invalid(e.to_string()))?;
    let database = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if mode == Mode::Memory || database == ":memory:" {
        return Ok(options);
    }
    let path = options.get_filename().to_path_buf();
    if path.as_os_str().is_empty() {
        // SQLite would open a private temporary database: nothing would survive a restart.
        return Err(invalid(
            "no database path (expected sqlite://PATH, e.g. sqlite://sluice.db)".into(),
        ));
    }
    if path.is_dir() {
        return Err(invalid(format!("{} is a directory", path.display())));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match mode {
        Mode::Create => std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("creating directory {}: {e}", dir.display()))
        })?,
        _ if !dir.is_dir() => {
            return Err(invalid(format!(
                "directory {} does not exist (create it, or add ?mode=rwc to the URL to let sluice create it)",
                dir.display()
            )));
        }
        Mode::ReadWrite if !path.exists() => {
            return Err(invalid(format!(
                "database file {} does not exist (mode=rw opens an existing file only)",
                path.display()
            )));
        }
        _ => {}
    }
    Ok(options.create_if_missing(mode != Mode::ReadWrite))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("sluice-sqlite-url-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn reason(url: &str) -> String {
        match options(url) {
            Ok(_) => panic!("{url} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn in_memory_and_plain_files_open() {
        assert!(options("sqlite::memory:").is_ok());
        assert!(options("sqlite://?mode=memory").is_ok());
        assert!(options("sqlite://sluice.db").is_ok());
        assert!(options("sqlite:sluice.db").is_ok());
    }

    #[test]
    fn urls_that_cannot_work_are_refused() {
        for empty in ["sqlite://", "sqlite:", "sqlite://?cache=shared"] {
            assert!(reason(empty).contains("no database path"), "{empty}");
        }
        assert!(reason("sqlite://x.db?mode=ro").contains("must be writable"));
        assert!(reason("sqlite://x.db?mode=rwx").contains("unknown mode"));
        assert!(reason("sqlite://x.db?colour=blue").contains("colour"));
        let dir = temp_dir("refused");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(reason(&format!("sqlite://{}", dir.display())).contains("is a directory"));
        let missing = dir.join("typo").join("sluice.db");
        let r = reason(&format!("sqlite://{}", missing.display()));
        assert!(
            r.contains("does not exist") && r.contains("mode=rwc"),
            "{r}"
        );
        assert!(!dir.join("typo").exists(), "the directory was created");
        let r = reason(&format!("sqlite://{}?mode=rw", dir.join("x.db").display()));
        assert!(r.contains("mode=rw opens an existing file only"), "{r}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mode_rwc_creates_the_directory() {
        let dir = temp_dir("rwc");
        let db = dir.join("a").join("b").join("sluice.db");
        options(&format!("sqlite://{}?mode=rwc", db.display())).unwrap();
        assert!(db.parent().unwrap().is_dir());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
