//! The writer connection of one batch, returned to its pool only if the batch's
//! transaction committed.
//!
//! After a failed write nothing about a connection can be trusted: SQLite rolls a
//! transaction back by itself when COMMIT fails with `SQLITE_FULL` or an I/O error,
//! but sqlx-sqlite 0.8 lowers its transaction depth only when COMMIT or ROLLBACK
//! succeeds, so the next `begin()` on that connection would open a SAVEPOINT inside a
//! transaction that never commits, and every later "commit" would only release it
//! (acked, never stored). A Postgres connection may be mid-protocol or dead. So any
//! failure, and a write cancelled half-way, closes the connection; the pool opens a
//! fresh one for the retry (which also reopens a SQLite file whose permissions or
//! file system were fixed meanwhile).

use std::ops::{Deref, DerefMut};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};

/// See the module doc.
pub(crate) struct WriterConn<DB: Database> {
    conn: PoolConnection<DB>,
    committed: bool,
}

impl<DB: Database> WriterConn<DB> {
    /// A connection of `pool` for one batch.
    pub(crate) async fn acquire(pool: &Pool<DB>) -> Result<Self, sqlx::Error> {
        Ok(Self {
            conn: pool.acquire().await?,
            committed: false,
        })
    }

    /// The outermost transaction committed: the connection may be reused.
    pub(crate) fn committed(mut self) {
        self.committed = true;
    }
}

impl<DB: Database> Deref for WriterConn<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &Self::Target {
        &self.conn
    }
}

impl<DB: Database> DerefMut for WriterConn<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.conn
    }
}

impl<DB: Database> Drop for WriterConn<DB> {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}
