//! Where the state is kept between runs.
//!
//! The contract every store keeps:
//! - [`Store::load`] is called once, before the first commit, and returns every entry the
//!   previous run committed;
//! - [`Store::commit`] is atomic and durable: when it returns `Ok`, every change in it survives
//!   a crash of the process or the machine; when it returns `Err`, none was applied;
//! - a store is used from one thread at a time (the ingest writer); it need not be `Sync`.
//!
//! [`SqliteStore`] is the default: SQLite (bundled, so nothing to install) in WAL mode with
//! `synchronous=FULL`, one fsync per commit. [`MemoryStore`] keeps nothing, for
//! `--storage.in-memory`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::event::{Key, Kind, Nanos, Status};
use crate::state::{Entry, RECENT, Recent};

/// Version of the schema written by this program.
const SCHEMA_VERSION: &str = "1";

/// One change to make durable.
#[derive(Clone, Copy, Debug)]
pub enum Change<'a> {
    /// Insert or replace the entry of a key.
    Put(&'a Key, &'a Entry),
    /// Forget a key.
    Delete(&'a Key),
}

/// Why the store could not be used. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be opened, or what is there is not a usable store. The file is
    /// left as it was.
    #[error("cannot use store {path}: {reason}")]
    Open {
        /// The store file, as given.
        path: String,
        /// Why it cannot be used, in words.
        reason: String,
    },
    /// A commit failed; nothing of it was applied.
    #[error("store {path}: commit failed: {source}")]
    Commit {
        /// The store file, as given.
        path: String,
        /// The SQLite error the commit failed with.
        source: rusqlite::Error,
    },
}

/// Keeps the state of every id across restarts. See the module documentation.
pub trait Store: Send {
    /// Reads every stored entry.
    fn load(&mut self) -> Result<Vec<(Key, Entry)>, StoreError>;
    /// Makes `changes` durable, all or nothing.
    fn commit(&mut self, changes: &[Change<'_>]) -> Result<(), StoreError>;
    /// Bytes the store takes on disk.
    fn size_bytes(&self) -> u64;
    /// Removes from disk what deleted or replaced content may have left there (after raw
    /// tokens were scrubbed from the store).
    fn compact(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A store that keeps nothing: state lives only in memory and is lost on restart.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn load(&mut self) -> Result<Vec<(Key, Entry)>, StoreError> {
        Ok(Vec::new())
    }

    fn commit(&mut self, _changes: &[Change<'_>]) -> Result<(), StoreError> {
        Ok(())
    }

    fn size_bytes(&self) -> u64 {
        0
    }
}

/// The SQLite store. One process at a time may hold it: the database is locked exclusively
/// while the exporter runs.
pub struct SqliteStore {
    connection: Connection,
    path: PathBuf,
    /// The entries read and checked while opening, handed out by [`Store::load`].
    loaded: Vec<(Key, Entry)>,
}

impl SqliteStore {
    /// Opens the store at `path`, creating it if there is no file or the file is empty.
    ///
    /// An existing file that is not a store of this program, is corrupt, or is locked by
    /// another process is refused, and left untouched.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let shown = path.display().to_string();
        let fail = |reason: String| StoreError::Open {
            path: shown.clone(),
            reason,
        };

        let existing = match std::fs::metadata(path) {
            Ok(meta) if !meta.is_file() => return Err(fail("not a regular file".into())),
            Ok(meta) => meta.len() > 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(fail(e.to_string())),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection =
            Connection::open_with_flags(path, flags).map_err(|e| fail(describe(&e)))?;
        // Exclusive locking before the first access: a second exporter on the same file gets
        // an error instead of a diverging copy of the state, and WAL needs no shared memory.
        connection
            .pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(|e| fail(describe(&e)))?;

        // Everything is read and checked before the first write (switching to WAL rewrites
        // the header), so a store that is refused is left exactly as it was.
        let loaded = if existing {
            check_existing(&connection).map_err(&fail)?;
            read_entries(&connection).map_err(&fail)?
        } else {
            Vec::new()
        };
        configure(&connection).map_err(|e| fail(describe(&e)))?;
        if !existing {
            create_schema(&connection).map_err(|e| fail(describe(&e)))?;
        }
        Ok(SqliteStore {
            connection,
            path: path.to_path_buf(),
            loaded,
        })
    }

    fn display_path(&self) -> String {
        self.path.display().to_string()
    }
}

/// Checks, without writing, that an existing file is a sound store of this program.
fn check_existing(connection: &Connection) -> Result<(), String> {
    let version: Option<String> = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => {
                "not a SQLite database, or its header is corrupt".to_string()
            }
            _ if e.to_string().contains("no such table") => {
                "a SQLite database, but not a localtonet-exporter store (no meta table)".into()
            }
            _ => describe(&e),
        })?;
    match version.as_deref() {
        Some(SCHEMA_VERSION) => {}
        Some(other) => return Err(format!("schema version {other}, this program reads 1")),
        None => return Err("the meta table has no schema_version".into()),
    }

    let check: String = connection
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(|e| describe(&e))?;
    if check != "ok" {
        return Err(format!("corrupt: {check}"));
    }
    Ok(())
}

fn configure(connection: &Connection) -> rusqlite::Result<()> {
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "store could not switch to WAL mode");
    }
    connection.pragma_update(None, "synchronous", "FULL")?;
    // Deleted content is overwritten, so a scrubbed raw token does not linger in free pages.
    connection.pragma_update(None, "secure_delete", "ON")?;
    Ok(())
}

fn create_schema(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(
        "BEGIN;
         CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
         CREATE TABLE ids (
             type TEXT NOT NULL CHECK (type IN ('token', 'tunnel')),
             id TEXT NOT NULL,
             connected INTEGER NOT NULL,
             since_ns INTEGER NOT NULL,
             newest_ns INTEGER NOT NULL,
             connects INTEGER NOT NULL,
             disconnects INTEGER NOT NULL,
             grp TEXT,
             recent BLOB NOT NULL,
             shown_id TEXT,
             PRIMARY KEY (type, id)
         ) WITHOUT ROWID;
         INSERT INTO meta (key, value) VALUES ('schema_version', '1');
         COMMIT;",
    )
}

/// Error text without SQLite's wording for locks, which users misread.
fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "locked by another process (is another exporter using it?)".into()
        }
        _ => e.to_string(),
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Vec<(Key, Entry)>, StoreError> {
        Ok(std::mem::take(&mut self.loaded))
    }

    fn commit(&mut self, changes: &[Change<'_>]) -> Result<(), StoreError> {
        let path = self.display_path();
        write_changes(&mut self.connection, changes)
            .map_err(|source| StoreError::Commit { path, source })
    }

    fn size_bytes(&self) -> u64 {
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [&self.path, &wal]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    fn compact(&mut self) -> Result<(), StoreError> {
        self.connection
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|source| StoreError::Commit {
                path: self.display_path(),
                source,
            })
    }
}

/// Reads and checks every stored entry.
fn read_entries(connection: &Connection) -> Result<Vec<(Key, Entry)>, String> {
    let mut statement = connection
        .prepare(
            "SELECT type, id, connected, since_ns, newest_ns, connects, disconnects, grp,
                    recent, shown_id
             FROM ids",
        )
        .map_err(|e| describe(&e))?;
    let rows = statement
        .query_map([], |row| {
            Ok(Row {
                kind: row.get(0)?,
                id: row.get(1)?,
                connected: row.get(2)?,
                since: row.get(3)?,
                newest: row.get(4)?,
                connects: row.get(5)?,
                disconnects: row.get(6)?,
                group: row.get(7)?,
                recent: row.get(8)?,
                shown_id: row.get(9)?,
            })
        })
        .map_err(|e| describe(&e))?;

    let mut entries = Vec::new();
    for row in rows {
        let row = row.map_err(|e| describe(&e))?;
        entries.push(row.into_entry()?);
    }
    Ok(entries)
}

fn write_changes(connection: &mut Connection, changes: &[Change<'_>]) -> rusqlite::Result<()> {
    let transaction = connection.transaction()?;
    {
        let mut put = transaction.prepare_cached(
            "INSERT OR REPLACE INTO ids
                 (type, id, connected, since_ns, newest_ns, connects, disconnects, grp, recent,
                  shown_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        let mut delete =
            transaction.prepare_cached("DELETE FROM ids WHERE type = ?1 AND id = ?2")?;
        for change in changes {
            match change {
                Change::Put(key, entry) => {
                    put.execute(params![
                        key.kind.as_str(),
                        &*key.id,
                        entry.status == Status::Connected,
                        entry.since,
                        entry.newest,
                        clamp(entry.connects),
                        clamp(entry.disconnects),
                        entry.group.as_deref(),
                        encode_recent(&entry.recent),
                        entry.shown_id.as_deref(),
                    ])?;
                }
                Change::Delete(key) => {
                    delete.execute(params![key.kind.as_str(), &*key.id])?;
                }
            }
        }
    }
    transaction.commit()
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A row as SQLite returns it, before validation.
struct Row {
    kind: String,
    id: String,
    connected: bool,
    since: Nanos,
    newest: Nanos,
    connects: i64,
    disconnects: i64,
    group: Option<String>,
    recent: Vec<u8>,
    shown_id: Option<String>,
}

impl Row {
    fn into_entry(self) -> Result<(Key, Entry), String> {
        let bad = |what: &str| format!("corrupt row for {} {:?}: {what}", self.kind, self.id);
        let kind = Kind::from_label(&self.kind).ok_or_else(|| bad("unknown type"))?;
        let connects = u64::try_from(self.connects).map_err(|_| bad("negative count"))?;
        let disconnects = u64::try_from(self.disconnects).map_err(|_| bad("negative count"))?;
        let recent = decode_recent(&self.recent).ok_or_else(|| bad("bad recent events"))?;
        let status = if self.connected {
            Status::Connected
        } else {
            Status::Disconnected
        };

        let entry = Entry {
            status,
            since: self.since,
            newest: self.newest,
            connects,
            disconnects,
            group: self.group.map(String::into_boxed_str),
            recent,
            shown_id: self.shown_id.map(String::into_boxed_str),
        };
        Ok((Key::new(kind, self.id), entry))
    }
}

/// Recent events as 9 bytes each, oldest first: ActionDate (i64, little-endian), then 1 for
/// Connected or 0 for Disconnected.
fn encode_recent(recent: &Recent) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECENT * 9);
    for (at, status) in recent.iter() {
        out.extend_from_slice(&at.to_le_bytes());
        out.push(u8::from(status == Status::Connected));
    }
    out
}

fn decode_recent(bytes: &[u8]) -> Option<Recent> {
    if bytes.len() % 9 != 0 || bytes.len() / 9 > RECENT {
        return None;
    }
    let mut recent = Recent::default();
    for chunk in bytes.chunks_exact(9) {
        let at = i64::from_le_bytes(chunk[..8].try_into().ok()?);
        let status = match chunk[8] {
            0 => Status::Disconnected,
            1 => Status::Connected,
            _ => return None,
        };
        recent.push(at, status);
    }
    Some(recent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        let mut entry = Entry::first(Status::Connected, 1_000, Some("office".into()));
        entry.apply(Status::Disconnected, 2_000, Some("office".into()));
        entry.apply(Status::Connected, 1_500, None);
        entry
    }

    #[test]
    fn committed_entries_are_loaded_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let (a, b) = (
            Key::new(Kind::Tunnel, "a"),
            Key::new(Kind::Token, "3b8f0e6747ce707b"),
        );
        {
            let mut store = SqliteStore::open(&path).expect("create");
            assert!(store.load().expect("load").is_empty());
            store
                .commit(&[Change::Put(&a, &entry()), Change::Put(&b, &entry())])
                .expect("put");
            store.commit(&[Change::Delete(&b)]).expect("delete");
            assert!(store.size_bytes() > 0);
        }
        let mut store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.load().expect("load"), vec![(a, entry())]);
    }

    #[test]
    fn a_second_process_cannot_open_a_store_in_use() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let _first = SqliteStore::open(&path).expect("first");
        let second = SqliteStore::open(&path).map(|_| ()).expect_err("locked");
        assert!(
            second.to_string().contains("locked by another process"),
            "{second}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let garbage = b"this is not a database, it is a shopping list\n".repeat(100);
        std::fs::write(&path, &garbage).expect("write");
        let err = SqliteStore::open(&path).map(|_| ()).expect_err("garbage");
        assert!(
            err.to_string().contains(&*path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("not a SQLite database"), "{err}");
        assert_eq!(std::fs::read(&path).expect("read"), garbage);
    }

    #[test]
    fn a_store_with_a_bad_row_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        {
            let mut store = SqliteStore::open(&path).expect("create");
            let key = Key::new(Kind::Tunnel, "a");
            store.commit(&[Change::Put(&key, &entry())]).expect("put");
        }
        Connection::open(&path)
            .and_then(|c| {
                c.execute_batch(
                    "PRAGMA journal_mode=DELETE; UPDATE ids SET recent = x'00' WHERE id = 'a';",
                )
            })
            .expect("damage a row");
        let before = std::fs::read(&path).expect("read");
        let err = SqliteStore::open(&path).map(|_| ()).expect_err("bad row");
        assert!(err.to_string().contains("bad recent events"), "{err}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "file left as it was"
        );
    }

    #[test]
    fn shown_ids_are_kept_and_can_be_cleared() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.db");
        let key = Key::new(Kind::Token, "3b8f0e6747ce707b");
        let mut shown = entry();
        shown.shown_id = Some("RAW-TOKEN-4711".into());
        {
            let mut store = SqliteStore::open(&path).expect("create");
            store.commit(&[Change::Put(&key, &shown)]).expect("put");
        }
        let mut store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(store.load().expect("load"), vec![(key.clone(), shown)]);
        store.commit(&[Change::Put(&key, &entry())]).expect("clear");
        store.compact().expect("compact");
        drop(store);
        for file in [path.clone(), dir.path().join("state.db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes.windows(3).any(|w| w == b"raw"),
                "{} keeps it",
                file.display()
            );
        }
    }

    #[test]
    fn a_foreign_sqlite_database_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("other.db");
        Connection::open(&path)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);"))
            .expect("foreign db");
        let err = SqliteStore::open(&path).map(|_| ()).expect_err("foreign");
        assert!(
            err.to_string().contains("not a localtonet-exporter store"),
            "{err}"
        );
    }

    #[test]
    fn a_folder_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = SqliteStore::open(dir.path())
            .map(|_| ())
            .expect_err("folder");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn recent_events_round_trip_and_bad_blobs_are_refused() {
        let recent = entry().recent;
        assert_eq!(decode_recent(&encode_recent(&recent)), Some(recent));
        assert_eq!(decode_recent(&[0; 8]), None);
        assert_eq!(decode_recent(&[0; 9 * (RECENT + 1)]), None);
        assert_eq!(decode_recent(&[0, 0, 0, 0, 0, 0, 0, 0, 2]), None);
    }
}
