//! What kind of database failure an error is, by SQLSTATE class (Postgres) or primary
//! result code (SQLite), and a short cause an operator can act on.
//!
//! Permanent — the database refuses these rows, and would refuse them again:
//! - Postgres classes `22` (data exception: bad encoding, value out of range), `23`
//!   (integrity violation), `54` (program limit exceeded: index row too large);
//! - SQLite `SQLITE_TOOBIG`, `SQLITE_CONSTRAINT`, `SQLITE_MISMATCH`, `SQLITE_RANGE`.
//!
//! Everything else is transient: connection and I/O failures, disk full, read-only
//! files, locks and busy timeouts, serialization failures, pool timeouts, and any error
//! we do not recognise (our own bugs included). A transient error is retried without
//! end with nothing acked; misfiling one as permanent would dead-letter good data.

/// SQLite primary result codes (`https://www.sqlite.org/rescode.html`).
mod sqlite_code {
    pub const BUSY: i64 = 5;
    pub const LOCKED: i64 = 6;
    pub const NOMEM: i64 = 7;
    pub const READONLY: i64 = 8;
    pub const IOERR: i64 = 10;
    pub const CORRUPT: i64 = 11;
    pub const FULL: i64 = 13;
    pub const CANTOPEN: i64 = 14;
    pub const TOOBIG: i64 = 18;
    pub const CONSTRAINT: i64 = 19;
    pub const MISMATCH: i64 = 20;
    pub const RANGE: i64 = 25;
}

/// Postgres `disk_full`.
const PG_DISK_FULL: &str = "53100";

/// Which database spoke, and its code.
enum Code<'a> {
    /// A SQLSTATE.
    Postgres(&'a str),
    /// A primary result code (the extended code's low byte).
    Sqlite(i64),
}

fn code(err: &sqlx::Error) -> Option<Code<'_>> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        return Some(Code::Postgres(pg.code()));
    }
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        let extended: i64 = db.code()?.parse().ok()?;
        return Some(Code::Sqlite(extended & 0xff));
    }
    None
}

/// See the module doc.
pub(super) fn is_permanent(err: &sqlx::Error) -> bool {
    use sqlite_code::*;
    match code(err) {
        Some(Code::Postgres(state)) => matches!(state.get(..2), Some("22" | "23" | "54")),
        Some(Code::Sqlite(code)) => matches!(code, TOOBIG | CONSTRAINT | MISMATCH | RANGE),
        None => false,
    }
}

/// A few words naming the cause, for logs, `/readyz` and `/metrics`: "disk full",
/// "connection failed", "database locked", ...
pub(super) fn cause(err: &sqlx::Error) -> &'static str {
    use sqlite_code::*;
    match code(err) {
        Some(Code::Postgres(PG_DISK_FULL)) | Some(Code::Sqlite(FULL)) => "disk full",
        Some(Code::Sqlite(READONLY)) => "read-only database",
        Some(Code::Sqlite(BUSY | LOCKED)) => "database locked",
        Some(Code::Sqlite(IOERR)) => "disk I/O error",
        Some(Code::Sqlite(CANTOPEN)) => "cannot open the database file",
        Some(Code::Sqlite(CORRUPT)) => "database file corrupt",
        Some(Code::Sqlite(NOMEM)) => "out of memory",
        Some(Code::Postgres(state)) if state.starts_with("08") => "connection failed",
        Some(Code::Postgres(state)) if state.starts_with("53") => "out of resources",
        Some(Code::Postgres(state)) if state.starts_with("57") => "server shutting down",
        Some(Code::Postgres(state)) if state.starts_with("58") => "server I/O error",
        Some(Code::Postgres(state)) if state.starts_with("40") => "transaction conflict",
        Some(Code::Postgres(state)) if state.starts_with("28") => "authentication failed",
        _ if is_permanent(err) => "data refused",
        None => match err {
            // A connection cut mid-handshake reads as a protocol error.
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => {
                "connection failed"
            }
            sqlx::Error::PoolTimedOut => "no connection within the acquire timeout",
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => "connection closed",
            _ => "database error",
        },
        Some(_) => "database error",
    }
}
