//! The embedded backend's audit trail: JSON lines appended to `audit.jsonl` beside the
//! database, one `write` per event (with `O_APPEND`, so concurrent appends never interleave
//! within a line) and fsynced. An event is appended after its change committed: a crash in
//! between loses the event, never invents one.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::audit::{AuditEvent, AuditQuery};
use crate::storage::{Result, StorageError};

/// File name of the trail, beside the database.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// Where the trail of the database at `db_path` lives.
pub(super) fn path_for(db_path: &Path) -> PathBuf {
    db_path.with_file_name(AUDIT_FILE)
}

pub(super) async fn append(path: Arc<PathBuf>, event: &AuditEvent) -> Result<()> {
    let mut line = serde_json::to_vec(event).map_err(StorageError::backend)?;
    line.push(b'\n');
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.as_path())?;
        file.write_all(&line)?;
        file.sync_data()
    })
    .await
    .map_err(StorageError::backend)?
    .map_err(StorageError::backend)
}

pub(super) async fn read(path: Arc<PathBuf>, query: AuditQuery) -> Result<Vec<AuditEvent>> {
    tokio::task::spawn_blocking(move || {
        let file = match std::fs::File::open(path.as_path()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::backend(e)),
        };
        let mut out = Vec::new();
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(StorageError::backend)?;
            // A line cut short by a crash mid-append is skipped, not fatal.
            let Ok(event) = serde_json::from_str::<AuditEvent>(&line) else {
                continue;
            };
            if query.wants(&event) {
                out.push(event);
                if out.len() >= query.n {
                    break;
                }
            }
        }
        Ok(out)
    })
    .await
    .map_err(StorageError::backend)?
}
