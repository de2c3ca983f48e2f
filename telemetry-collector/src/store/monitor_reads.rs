//! The read queries behind the monitor pages and `/api/v1`: filtered, keyset-paged
//! lists of runs, events and dead letters (the overview's figures are in
//! [`super::overview`]).
//!
//! Filters are built into the SQL only when set (not `($1 IS NULL OR col = $1)`), so
//! each query's plan can use the index of the filter it has: a shop, status, model or
//! prompt pack filter deep in a million runs is an index range, not a scan. The queries
//! are built with [`sqlx::QueryBuilder`], generic over the database, so both dialects
//! share them (each with its own placeholders).

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Encode, FromRow, Pool, Postgres, QueryBuilder, Sqlite, Type};

use super::stale::{StaleCutoff, RUNNING, STALE};
use super::MAX_PAGE_SIZE;

/// Filters and cursor of a runs page (`/monitor`, `/api/v1/runs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Exact shop id.
    pub shop_id: Option<String>,
    /// `running`, `stale`, `complete`, `partial`, `failed`, ... With
    /// [`stale_before`](Self::stale_before) set, `stale` means stored `running` and
    /// started before the cutoff, and `running` only the runs started since.
    pub status: Option<String>,
    /// Which runs still `running` are stale now (see [`super::stale`]); `None`
    /// matches `status` as stored.
    pub stale_before: Option<StaleCutoff>,
    /// Exact model.
    pub model: Option<String>,
    /// Exact prompt pack version.
    pub prompt_pack_version: Option<String>,
    /// `started_at >= from` (unix ms).
    pub from: Option<i64>,
    /// `started_at < to` (unix ms).
    pub to: Option<i64>,
    /// A run id or a request id, matched exactly.
    pub text: Option<String>,
    /// Keyset cursor: rows strictly before `(started_at, run_id)`, newest first.
    pub before: Option<(i64, String)>,
    /// Page size, clamped to `1..=MAX_PAGE_SIZE`.
    pub limit: i64,
}

/// Filters and cursor of an events page (`/monitor/events`, `/api/v1/events`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// `event_type` column: an event's type (`sf_render_requested`) or a kind (`run_started`).
    pub event_type: Option<String>,
    /// `source` column (`app_proxy`, `renderer`, ...).
    pub source: Option<String>,
    /// Exact shop id.
    pub shop_id: Option<String>,
    /// Exact request id.
    pub request_id: Option<String>,
    /// `occurred_at >= from` (unix ms).
    pub from: Option<i64>,
    /// `occurred_at < to` (unix ms).
    pub to: Option<i64>,
    /// Keyset cursor: rows strictly before it, newest first.
    pub before: Option<EventCursor>,
    /// Page size, clamped to `1..=MAX_PAGE_SIZE`.
    pub limit: i64,
}

/// Where an events page ends, in the lists' order: time, then producer, then the
/// producer's sequence (the order it made its events in, which a millisecond's worth
/// of UUIDv7 ids does not keep), then the event id (unique, so no row is skipped or
/// repeated between pages even if a producer reused a sequence number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventCursor {
    pub occurred_at: i64,
    pub producer: String,
    pub producer_seq: i64,
    pub event_id: String,
}

/// The events lists' order, oldest first (the lists show it newest first): see
/// [`EventCursor`]. A run's timeline uses it as is.
pub(crate) const EVENT_ORDER: [&str; 4] = ["occurred_at", "producer", "producer_seq", "event_id"];

/// Runs a built query to the end. Each database has its own impl because generic code
/// cannot: sqlx ties the borrow of a [`QueryBuilder`] to its arguments' lifetime, and
/// only a concrete database's argument type lets the compiler shorten that lifetime.
#[async_trait::async_trait]
pub(crate) trait FetchBuilt: Database {
    async fn fetch_all<O>(
        pool: &Pool<Self>,
        query: QueryBuilder<'_, Self>,
    ) -> Result<Vec<O>, sqlx::Error>
    where
        O: for<'r> FromRow<'r, Self::Row> + Send + Unpin + 'static;
}

#[async_trait::async_trait]
impl FetchBuilt for Sqlite {
    async fn fetch_all<O>(
        pool: &Pool<Self>,
        mut query: QueryBuilder<'_, Self>,
    ) -> Result<Vec<O>, sqlx::Error>
    where
        O: for<'r> FromRow<'r, SqliteRow> + Send + Unpin + 'static,
    {
        query.build_query_as().fetch_all(pool).await
    }
}

#[async_trait::async_trait]
impl FetchBuilt for Postgres {
    async fn fetch_all<O>(
        pool: &Pool<Self>,
        mut query: QueryBuilder<'_, Self>,
    ) -> Result<Vec<O>, sqlx::Error>
    where
        O: for<'r> FromRow<'r, PgRow> + Send + Unpin + 'static,
    {
        query.build_query_as().fetch_all(pool).await
    }
}

/// ` AND {column} = value`, when the filter is set.
fn eq_text<'a, DB>(query: &mut QueryBuilder<'a, DB>, column: &str, value: &'a Option<String>)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    if let Some(value) = value {
        query
            .push(format_args!(" AND {column} = "))
            .push_bind(value.as_str());
    }
}

/// ` AND {column} >= from AND {column} < to`, each when set.
pub(crate) fn range<DB>(
    query: &mut QueryBuilder<'_, DB>,
    column: &str,
    from: Option<i64>,
    to: Option<i64>,
) where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Some(from) = from {
        query
            .push(format_args!(" AND {column} >= "))
            .push_bind(from);
    }
    if let Some(to) = to {
        query.push(format_args!(" AND {column} < ")).push_bind(to);
    }
}

/// One value of a keyset cursor.
enum Key<'a> {
    Int(i64),
    Text(&'a str),
}

/// Rows strictly before the cursor (one value per column of `order`, compared as a
/// tuple), newest first, one page.
fn keyset_desc<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    order: &[&str],
    before: Option<Vec<Key<'a>>>,
    limit: i64,
) where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    if let Some(keys) = before {
        query.push(format_args!(" AND ({}) < (", order.join(", ")));
        let mut values = query.separated(", ");
        for key in keys {
            match key {
                Key::Int(value) => values.push_bind(value),
                Key::Text(value) => values.push_bind(value),
            };
        }
        query.push(")");
    }
    let descending: Vec<String> = order.iter().map(|c| format!("{c} DESC")).collect();
    query
        .push(format_args!(" ORDER BY {} LIMIT ", descending.join(", ")))
        .push_bind(limit.clamp(1, MAX_PAGE_SIZE));
}

/// The status filter of a runs page. With a cutoff, `stale` is stored `running` and
/// started before it, and `running` only the runs started since: both a range of the
/// `(status, started_at, run_id)` index, like any other status.
fn status<'a, DB>(
    query: &mut QueryBuilder<'a, DB>,
    status: Option<&'a str>,
    stale_before: Option<StaleCutoff>,
) where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let Some(status) = status else {
        return;
    };
    match stale_before {
        Some(StaleCutoff(cutoff)) if status == STALE || status == RUNNING => {
            let side = if status == STALE { "<" } else { ">=" };
            query
                .push(" AND status = ")
                .push_bind(RUNNING)
                .push(format_args!(" AND started_at {side} "))
                .push_bind(cutoff);
        }
        _ => {
            query.push(" AND status = ").push_bind(status);
        }
    }
}

pub(crate) fn runs_query<DB>(filter: &RunFilter) -> QueryBuilder<'_, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT * FROM render_runs WHERE 1 = 1");
    eq_text(&mut query, "shop_id", &filter.shop_id);
    status(&mut query, filter.status.as_deref(), filter.stale_before);
    eq_text(&mut query, "model", &filter.model);
    eq_text(
        &mut query,
        "prompt_pack_version",
        &filter.prompt_pack_version,
    );
    range(&mut query, "started_at", filter.from, filter.to);
    if let Some(text) = &filter.text {
        query
            .push(" AND (run_id = ")
            .push_bind(text.as_str())
            .push(" OR request_id = ")
            .push_bind(text.as_str())
            .push(")");
    }
    let before = filter
        .before
        .as_ref()
        .map(|(at, id)| vec![Key::Int(*at), Key::Text(id)]);
    keyset_desc(&mut query, &["started_at", "run_id"], before, filter.limit);
    query
}

pub(crate) fn events_query<DB>(filter: &EventFilter) -> QueryBuilder<'_, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT * FROM monitor_events WHERE 1 = 1");
    eq_text(&mut query, "event_type", &filter.event_type);
    eq_text(&mut query, "source", &filter.source);
    eq_text(&mut query, "shop_id", &filter.shop_id);
    eq_text(&mut query, "request_id", &filter.request_id);
    range(&mut query, "occurred_at", filter.from, filter.to);
    let before = filter.before.as_ref().map(|c| {
        vec![
            Key::Int(c.occurred_at),
            Key::Text(&c.producer),
            Key::Int(c.producer_seq),
            Key::Text(&c.event_id),
        ]
    });
    keyset_desc(&mut query, &EVENT_ORDER, before, filter.limit);
    query
}

pub(crate) fn dead_letters_query<'a, DB>(before: Option<i64>, limit: i64) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("SELECT * FROM dead_letters WHERE 1 = 1");
    if let Some(before) = before {
        query.push(" AND id < ").push_bind(before);
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(limit.clamp(1, MAX_PAGE_SIZE));
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_filters_reach_the_sql_and_placeholders_follow_the_arguments() {
        use sqlx::{Arguments as _, Execute as _};
        let filter = RunFilter {
            status: Some("failed".into()),
            text: Some("req-1".into()),
            before: Some((5, "r".into())),
            limit: 10,
            ..Default::default()
        };
        let mut query = runs_query::<sqlx::Postgres>(&filter);
        assert_eq!(
            query.sql(),
            "SELECT * FROM render_runs WHERE 1 = 1 AND status = $1 \
             AND (run_id = $2 OR request_id = $3) AND (started_at, run_id) < ($4, $5) \
             ORDER BY started_at DESC, run_id DESC LIMIT $6"
        );
        let args = query.build().take_arguments().unwrap().unwrap();
        assert_eq!(args.len(), 6);
    }

    #[test]
    fn stale_and_running_split_the_stored_running_runs_at_the_cutoff() {
        let sql = |status: &str, stale_before| {
            let filter = RunFilter {
                status: Some(status.into()),
                stale_before,
                limit: 10,
                ..Default::default()
            };
            runs_query::<sqlx::Sqlite>(&filter).sql().to_owned()
        };
        let cutoff = Some(StaleCutoff(5));
        let head = "SELECT * FROM render_runs WHERE 1 = 1 AND status = ?";
        let tail = " ORDER BY started_at DESC, run_id DESC LIMIT ?";
        assert_eq!(
            sql("stale", cutoff),
            format!("{head} AND started_at < ?{tail}")
        );
        assert_eq!(
            sql("running", cutoff),
            format!("{head} AND started_at >= ?{tail}")
        );
        assert_eq!(sql("partial", cutoff), format!("{head}{tail}"));
        assert_eq!(sql("running", None), format!("{head}{tail}"));
    }
}
