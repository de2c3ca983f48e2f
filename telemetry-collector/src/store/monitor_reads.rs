//! The read queries behind the monitor pages and `/api/v1`: filtered, keyset-paged
//! lists of runs, events and dead letters (the overview's figures are in
//! [`super::monitor_stats`]).
//!
//! Filters are built into the SQL only when set (not `($1 IS NULL OR col = $1)`), so
//! each query's plan can use the index of the filter it has: a shop, status, model or
//! prompt pack filter deep in a million runs is an index range, not a scan. The SQL text
//! uses `$n` placeholders, which both dialects accept, so both share it.

use super::MAX_PAGE_SIZE;

/// Filters and cursor of a runs page (`/monitor`, `/api/v1/runs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// Exact shop id.
    pub shop_id: Option<String>,
    /// `running`, `complete`, `partial`, `failed`.
    pub status: Option<String>,
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
    /// Keyset cursor: rows strictly before `(occurred_at, event_id)`, newest first.
    pub before: Option<(i64, String)>,
    /// Page size, clamped to `1..=MAX_PAGE_SIZE`.
    pub limit: i64,
}

/// A bound value of a query being built.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// SQL text with `$n` placeholders and the values to bind, in order.
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends `text`, replacing each `?` with the next placeholder for `args`.
    pub(crate) fn push(&mut self, text: &str, args: impl IntoIterator<Item = Arg>) {
        let mut args = args.into_iter();
        for (i, part) in text.split('?').enumerate() {
            if i > 0 {
                let arg = args.next().expect("one argument per placeholder");
                self.args.push(arg);
                self.text.push_str(&format!("${}", self.args.len()));
            }
            self.text.push_str(part);
        }
    }

    fn eq_text(&mut self, column: &str, value: &Option<String>) {
        if let Some(value) = value {
            self.push(&format!(" AND {column} = ?"), [Arg::Text(value.clone())]);
        }
    }

    pub(crate) fn range(&mut self, column: &str, from: Option<i64>, to: Option<i64>) {
        if let Some(from) = from {
            self.push(&format!(" AND {column} >= ?"), [Arg::Int(from)]);
        }
        if let Some(to) = to {
            self.push(&format!(" AND {column} < ?"), [Arg::Int(to)]);
        }
    }

    fn keyset_desc(&mut self, time: &str, id: &str, before: &Option<(i64, String)>, limit: i64) {
        if let Some((at, last)) = before {
            self.push(
                &format!(" AND ({time}, {id}) < (?, ?)"),
                [Arg::Int(*at), Arg::Text(last.clone())],
            );
        }
        self.push(
            &format!(" ORDER BY {time} DESC, {id} DESC LIMIT ?"),
            [Arg::Int(limit.clamp(1, MAX_PAGE_SIZE))],
        );
    }
}

pub(crate) fn runs_sql(filter: &RunFilter) -> Sql {
    let mut sql = Sql::new("SELECT * FROM render_runs WHERE 1 = 1");
    sql.eq_text("shop_id", &filter.shop_id);
    sql.eq_text("status", &filter.status);
    sql.eq_text("model", &filter.model);
    sql.eq_text("prompt_pack_version", &filter.prompt_pack_version);
    sql.range("started_at", filter.from, filter.to);
    if let Some(text) = &filter.text {
        sql.push(
            " AND (run_id = ? OR request_id = ?)",
            [Arg::Text(text.clone()), Arg::Text(text.clone())],
        );
    }
    sql.keyset_desc("started_at", "run_id", &filter.before, filter.limit);
    sql
}

pub(crate) fn events_sql(filter: &EventFilter) -> Sql {
    let mut sql = Sql::new("SELECT * FROM monitor_events WHERE 1 = 1");
    sql.eq_text("event_type", &filter.event_type);
    sql.eq_text("source", &filter.source);
    sql.eq_text("shop_id", &filter.shop_id);
    sql.eq_text("request_id", &filter.request_id);
    sql.range("occurred_at", filter.from, filter.to);
    sql.keyset_desc("occurred_at", "event_id", &filter.before, filter.limit);
    sql
}

pub(crate) fn dead_letters_sql(before: Option<i64>, limit: i64) -> Sql {
    let mut sql = Sql::new("SELECT * FROM dead_letters WHERE 1 = 1");
    if let Some(before) = before {
        sql.push(" AND id < ?", [Arg::Int(before)]);
    }
    sql.push(
        " ORDER BY id DESC LIMIT ?",
        [Arg::Int(limit.clamp(1, MAX_PAGE_SIZE))],
    );
    sql
}

/// Binds a built query's arguments in order.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                $crate::store::monitor_reads::Arg::Text(value) => query.bind(value),
                $crate::store::monitor_reads::Arg::Int(value) => query.bind(value),
            };
        }
        query
    }};
}
pub(crate) use bind_args;

/// The monitor's read queries, expanded in each dialect's `impl` (as `read_queries!`)
/// with the driver's database type.
macro_rules! monitor_read_queries {
    ($db:ty, stats = grouped) => {
        $crate::store::monitor_reads::monitor_read_queries!($db);

        async fn read_monitor_stats(
            &self,
            from: i64,
            to: i64,
        ) -> Result<$crate::store::Stats, $crate::store::StoreError> {
            let sql = $crate::store::monitor_stats::stats_sql(from, to);
            let query = sqlx::query_as::<$db, $crate::store::StatsRow>(&sql.text);
            let rows = $crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?;
            Ok($crate::store::monitor_stats::summarize(from, to, &rows))
        }
    };
    ($db:ty, stats = packed) => {
        $crate::store::monitor_reads::monitor_read_queries!($db);

        async fn read_monitor_stats(
            &self,
            from: i64,
            to: i64,
        ) -> Result<$crate::store::Stats, $crate::store::StoreError> {
            use $crate::store::monitor_reads as reads;
            use $crate::store::monitor_stats as stats;
            let sql = stats::stats_packed_sql(from, to);
            let query = sqlx::query_as::<$db, stats::PackedRuns>(&sql.text);
            let packed = reads::bind_args!(query, sql.args)
                .fetch_one(&self.reader)
                .await?;
            Ok(stats::summarize(from, to, &stats::fold_packed(&packed)))
        }
    };
    ($db:ty) => {
        async fn read_monitor_runs(
            &self,
            filter: &$crate::store::RunFilter,
        ) -> Result<Vec<$crate::store::RunRecord>, $crate::store::StoreError> {
            let sql = $crate::store::monitor_reads::runs_sql(filter);
            let query = sqlx::query_as::<$db, $crate::store::RunRecord>(&sql.text);
            Ok($crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?)
        }

        async fn read_monitor_events(
            &self,
            filter: &$crate::store::EventFilter,
        ) -> Result<Vec<$crate::store::EventRecord>, $crate::store::StoreError> {
            let sql = $crate::store::monitor_reads::events_sql(filter);
            let query = sqlx::query_as::<$db, $crate::store::EventRecord>(&sql.text);
            Ok($crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?)
        }

        async fn read_monitor_dead_letters(
            &self,
            before: Option<i64>,
            limit: i64,
        ) -> Result<Vec<$crate::store::DeadLetterRecord>, $crate::store::StoreError> {
            let sql = $crate::store::monitor_reads::dead_letters_sql(before, limit);
            let query = sqlx::query_as::<$db, $crate::store::DeadLetterRecord>(&sql.text);
            Ok($crate::store::monitor_reads::bind_args!(query, sql.args)
                .fetch_all(&self.reader)
                .await?)
        }
    };
}
pub(crate) use monitor_read_queries;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_set_filters_reach_the_sql_and_placeholders_follow_the_arguments() {
        let sql = runs_sql(&RunFilter {
            status: Some("failed".into()),
            text: Some("req-1".into()),
            before: Some((5, "r".into())),
            limit: 10,
            ..Default::default()
        });
        assert_eq!(
            sql.text,
            "SELECT * FROM render_runs WHERE 1 = 1 AND status = $1 \
             AND (run_id = $2 OR request_id = $3) AND (started_at, run_id) < ($4, $5) \
             ORDER BY started_at DESC, run_id DESC LIMIT $6"
        );
        assert_eq!(sql.args.len(), 6);
    }
}
