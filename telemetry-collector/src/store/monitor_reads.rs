//! The read queries behind the monitor pages and `/api/v1`: filtered, keyset-paged
//! lists of runs, events and dead letters (the overview's figures are in
//! [`super::overview`]).
//!
//! Filters are built into the SQL only when set (not `($1 IS NULL OR col = $1)`), so
//! each query's plan can use the index of the filter it has: a shop, status, model or
//! prompt pack filter deep in a million runs is an index range, not a scan. The queries
//! are built with [`sqlx::QueryBuilder`], generic over the database, so both dialects
//! share them (each with its own placeholders).
//!
//! Shops and models are matched without regard to ASCII case, through indexes on
//! `lower(shop_id)` and `lower(model)` (both databases lowercase ASCII only, as
//! [`str::to_ascii_lowercase`] does, so the parameter is lowered the same way). A shop
//! filter is a prefix (`casa-verde` finds `Casa-Verde.myshopify.com`): the shops it
//! matches are first found in the index ([`shops_query`], one seek per shop), then each
//! is read as its own index range in the list's order ([`ShopMatch`]), so a prefix
//! is as cheap as an exact shop. A prefix that matches more than
//! [`MAX_SHOP_BRANCHES`] shops is broad: it is checked row by row in time order, where
//! such a prefix's rows are dense.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Encode, FromRow, Pool, Postgres, QueryBuilder, Sqlite, Type};

use super::stale::{StaleCutoff, RUNNING, STALE};
use super::MAX_PAGE_SIZE;

/// Shops a prefix may match and still be read as one index range each; past that
/// the prefix is broad ([`ShopMatch::Broad`]).
pub const MAX_SHOP_BRANCHES: usize = 16;

/// Variants with one error code up to which the runs filtered by it are read through
/// the code's index and sorted; past it the list is read in its order, each run checked
/// in that index (the code is common enough that a page is found early).
pub const MAX_SORTED_ERROR_VARIANTS: i64 = 5_000;

/// How the runs query reads what its filter asks for, decided from the data first
/// ([`shops_query`], [`error_count_query`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RunsPlan {
    /// What the shop filter matches; `None` without one.
    pub shops: Option<ShopMatch>,
    /// The error code filter's code is rare (at most [`MAX_SORTED_ERROR_VARIANTS`]
    /// variants have it).
    pub rare_error: bool,
}

/// The order of a runs page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunOrder {
    /// Newest start first; the cursor is `(started_at, run_id)`.
    #[default]
    Started,
    /// Longest run first, only runs with a duration (finished); the cursor is
    /// `(total_duration_ms, run_id)`.
    Duration,
}

impl RunOrder {
    /// The columns of the order (and of the cursor), most significant first.
    pub(crate) fn columns(self) -> [&'static str; 2] {
        match self {
            Self::Started => ["started_at", "run_id"],
            Self::Duration => ["total_duration_ms", "run_id"],
        }
    }
}

/// Filters and cursor of a runs page (`/monitor`, `/api/v1/runs`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunFilter {
    /// A shop id's prefix, any ASCII case (`casa-verde` finds
    /// `Casa-Verde.myshopify.com`).
    pub shop_id: Option<String>,
    /// `running`, `stale`, `complete`, `partial`, `failed`, ... With
    /// [`stale_before`](Self::stale_before) set, `stale` means stored `running` and
    /// started before the cutoff, and `running` only the runs started since.
    pub status: Option<String>,
    /// Which runs still `running` are stale now (see [`super::stale`]); `None`
    /// matches `status` as stored.
    pub stale_before: Option<StaleCutoff>,
    /// A model, any ASCII case.
    pub model: Option<String>,
    /// Exact prompt pack version.
    pub prompt_pack_version: Option<String>,
    /// Runs with a variant that ended with this error code (`provider_error`, ...).
    pub error_code: Option<String>,
    /// `total_duration_ms >= min_duration_ms` (runs without a duration are left out).
    pub min_duration_ms: Option<i64>,
    /// `total_duration_ms <= max_duration_ms` (runs without a duration are left out).
    pub max_duration_ms: Option<i64>,
    /// `started_at >= from` (unix ms).
    pub from: Option<i64>,
    /// `started_at < to` (unix ms).
    pub to: Option<i64>,
    /// A run id or a request id, matched exactly.
    pub text: Option<String>,
    /// The page's order.
    pub order: RunOrder,
    /// Keyset cursor: rows strictly before it in [`RunFilter::order`]
    /// (`(started_at, run_id)` or `(total_duration_ms, run_id)`), descending.
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
    /// A shop id's prefix, any ASCII case (as [`RunFilter::shop_id`]).
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

/// What a shop filter matches, found before the list is read ([`shops_query`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ShopMatch {
    /// No shop starts with the prefix: the page is empty.
    Nothing,
    /// These shops (lowercase), one to [`MAX_SHOP_BRANCHES`]: each read as its own
    /// index range in the list's order, the pages merged.
    Shops(Vec<String>),
    /// More shops than that start with this prefix (lowercase): it is checked row by
    /// row, in the list's order.
    Broad(String),
}

impl ShopMatch {
    /// What `prefix` (lowercase) matches, from the shops [`shops_query`] found.
    pub(crate) fn of(prefix: &str, found: Vec<String>) -> Self {
        match found.len() {
            0 => Self::Nothing,
            n if n <= MAX_SHOP_BRANCHES => Self::Shops(found),
            _ => Self::Broad(prefix.to_owned()),
        }
    }

    /// The shop condition of each branch of the list's query (`None`: no condition).
    fn branches(shops: Option<&Self>) -> Vec<Option<ShopCond<'_>>> {
        match shops {
            None => vec![None],
            Some(Self::Nothing) => vec![Some(ShopCond::Nothing)],
            Some(Self::Shops(shops)) => shops.iter().map(|s| Some(ShopCond::Is(s))).collect(),
            Some(Self::Broad(prefix)) => vec![Some(ShopCond::Prefix(prefix))],
        }
    }
}

/// One branch's shop condition.
#[derive(Debug, Clone, Copy)]
enum ShopCond<'a> {
    Nothing,
    /// `lower(shop_id) = shop`: an index range.
    Is(&'a str),
    /// `lower(shop_id)` starts with it, written so that no index serves it (the list's
    /// order does).
    Prefix(&'a str),
}

/// The least string above every string that starts with `prefix`, in byte order (code
/// point order, in UTF-8: both databases compare these columns so); `None` when no
/// string is (a prefix of U+10FFFF only).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The distinct `lower(shop_id)` of `table` that start with `prefix` (lowercase), in
/// order, at most [`MAX_SHOP_BRANCHES`] + 1: a loose scan of the `lower(shop_id)`
/// index, one seek per shop however many rows each has.
pub(crate) fn shops_query<'a, DB>(
    table: &'static str,
    prefix: &'a str,
    end: Option<&'a str>,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!(
        "WITH RECURSIVE shops(shop, n) AS (SELECT (SELECT lower(shop_id) FROM {table} \
         WHERE lower(shop_id) >= "
    ));
    query.push_bind(prefix);
    let below_end = |query: &mut QueryBuilder<'a, DB>| {
        if let Some(end) = end {
            query.push(" AND lower(shop_id) < ").push_bind(end);
        }
    };
    below_end(&mut query);
    query.push(format_args!(
        " ORDER BY lower(shop_id) LIMIT 1), 1 UNION ALL SELECT (SELECT lower(shop_id) \
         FROM {table} WHERE lower(shop_id) > shops.shop"
    ));
    below_end(&mut query);
    query
        .push(
            " ORDER BY lower(shop_id) LIMIT 1), n + 1 FROM shops \
             WHERE shops.shop IS NOT NULL AND n <= ",
        )
        .push_bind(MAX_SHOP_BRANCHES as i64)
        .push(") SELECT shop FROM shops WHERE shop IS NOT NULL");
    query
}

/// How many variants (up to [`MAX_SORTED_ERROR_VARIANTS`] + 1) ended with `code`
/// (lowercase), counted in the `variant_results_by_error` index.
pub(crate) fn error_count_query<'a, DB>(code: &'a str) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(format!(
        "SELECT count(*) FROM (SELECT 1 FROM variant_results WHERE {ERROR_CODE_SET} \
         AND error_code = "
    ));
    query
        .push_bind(code)
        .push(" LIMIT ")
        .push_bind(MAX_SORTED_ERROR_VARIANTS + 1)
        .push(") AS counted");
    query
}

/// The part of `variant_results_by_error`'s predicate a query must repeat for the
/// partial index to serve it (`error_code IS NOT NULL` follows from `error_code = ?`).
const ERROR_CODE_SET: &str = "error_code <> 'unspecified'";

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

/// ` AND lower({column}) = value` (lowered here), when the filter is set.
fn eq_folded<DB>(query: &mut QueryBuilder<'_, DB>, column: &str, value: &Option<String>)
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Some(value) = value {
        query
            .push(format_args!(" AND lower({column}) = "))
            .push_bind(value.to_ascii_lowercase());
    }
}

/// A branch's shop condition on `column`.
fn shop<'a, DB>(query: &mut QueryBuilder<'a, DB>, column: &str, shop: Option<ShopCond<'a>>)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    match shop {
        None => {}
        Some(ShopCond::Nothing) => {
            query.push(" AND 1 = 0");
        }
        Some(ShopCond::Is(shop)) => {
            query
                .push(format_args!(" AND lower({column}) = "))
                .push_bind(shop);
        }
        Some(ShopCond::Prefix(prefix)) => {
            // The length is ours (a count), not the user's text.
            let chars = prefix.chars().count();
            query
                .push(format_args!(" AND substr(lower({column}), 1, {chars}) = "))
                .push_bind(prefix);
        }
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

/// `AND lower(r.model) = <model, lowercased>` when a model is given: the overview's and
/// the error groups' model filter, in any case like the runs list's (both databases
/// lowercase ASCII only, as the runs list's index does).
pub(crate) fn run_model_is<DB>(query: &mut QueryBuilder<'_, DB>, model: Option<&str>)
where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    run_model_is_column(query, "r.model", model);
}

/// [`run_model_is`] over another column (the rollups' `model`).
pub(crate) fn run_model_is_column<DB>(
    query: &mut QueryBuilder<'_, DB>,
    column: &str,
    model: Option<&str>,
) where
    DB: Database,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Some(model) = model {
        query
            .push(format_args!(" AND lower({column}) = "))
            .push_bind(model.to_ascii_lowercase());
    }
}

/// One value of a keyset cursor.
#[derive(Debug, Clone, Copy)]
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
    order_limit(query, order, limit);
}

/// ` ORDER BY` each column of `order` descending, ` LIMIT` one page.
fn order_limit<DB>(query: &mut QueryBuilder<'_, DB>, order: &[&str], limit: i64)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let descending: Vec<String> = order.iter().map(|c| format!("{c} DESC")).collect();
    query
        .push(format_args!(" ORDER BY {} LIMIT ", descending.join(", ")))
        .push_bind(limit.clamp(1, MAX_PAGE_SIZE));
}

/// The list's query: one branch per shop condition (each ordered and limited by
/// `branch`), as it is when there is one, else their union ordered and limited again.
fn union<'a, DB>(
    shops: Vec<Option<ShopCond<'a>>>,
    order: &[&str],
    limit: i64,
    mut branch: impl FnMut(&mut QueryBuilder<'a, DB>, Option<ShopCond<'a>>),
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new("");
    if let [only] = shops[..] {
        branch(&mut query, only);
        return query;
    }
    for (i, shop) in shops.into_iter().enumerate() {
        if i > 0 {
            query.push(" UNION ALL ");
        }
        query.push("SELECT * FROM (");
        branch(&mut query, shop);
        query.push(format_args!(") AS branch{i}"));
    }
    order_limit(&mut query, order, limit);
    query
}

/// The status filter of a runs page (any ASCII case). With a cutoff, `stale` is stored
/// `running` and started before it, and `running` only the runs started since: both
/// a range of the `(status, started_at, run_id)` index, like any other status.
fn status<DB>(
    query: &mut QueryBuilder<'_, DB>,
    status: Option<&str>,
    stale_before: Option<StaleCutoff>,
) where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let Some(status) = status.map(str::to_ascii_lowercase) else {
        return;
    };
    match stale_before {
        Some(StaleCutoff(cutoff)) if status == STALE || status == RUNNING => {
            let side = if status == STALE { "<" } else { ">=" };
            query
                .push(" AND status = ")
                .push_bind(RUNNING.to_owned())
                .push(format_args!(" AND started_at {side} "))
                .push_bind(cutoff);
        }
        _ => {
            query.push(" AND status = ").push_bind(status);
        }
    }
}

/// The runs page `filter` asks for, read as `plan` says.
pub(crate) fn runs_query<'a, DB>(filter: &'a RunFilter, plan: &'a RunsPlan) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let order = filter.order.columns();
    union(
        ShopMatch::branches(plan.shops.as_ref()),
        &order,
        filter.limit,
        |query, shop_cond| {
            query.push("SELECT * FROM render_runs WHERE 1 = 1");
            shop(query, "shop_id", shop_cond);
            status(query, filter.status.as_deref(), filter.stale_before);
            eq_folded(query, "model", &filter.model);
            eq_text(query, "prompt_pack_version", &filter.prompt_pack_version);
            if let Some(code) = &filter.error_code {
                // A rare code: its runs, from its index, sorted. A common one: the
                // list in its order, each run looked up in the code's index.
                // (A scalar subquery, not EXISTS: Postgres would turn EXISTS into a
                // join, misjudge how many runs have the code, and sort them all.)
                let (check, end) = if plan.rare_error {
                    (
                        format!(
                            " AND run_id IN (SELECT run_id FROM variant_results WHERE \
                             {ERROR_CODE_SET} AND error_code = "
                        ),
                        ")",
                    )
                } else {
                    (
                        format!(
                            " AND (SELECT 1 FROM variant_results AS v WHERE v.run_id = \
                             render_runs.run_id AND v.{ERROR_CODE_SET} AND v.error_code = "
                        ),
                        " LIMIT 1) IS NOT NULL",
                    )
                };
                query
                    .push(check)
                    .push_bind(code.to_ascii_lowercase())
                    .push(end);
            }
            let durations = filter.min_duration_ms.is_some() || filter.max_duration_ms.is_some();
            if durations || filter.order == RunOrder::Duration {
                // The predicate of `render_runs_by_duration`.
                query.push(" AND total_duration_ms IS NOT NULL");
            }
            if let Some(min) = filter.min_duration_ms {
                query.push(" AND total_duration_ms >= ").push_bind(min);
            }
            if let Some(max) = filter.max_duration_ms {
                query.push(" AND total_duration_ms <= ").push_bind(max);
            }
            range(query, "started_at", filter.from, filter.to);
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
                .map(|(key, id)| vec![Key::Int(*key), Key::Text(id)]);
            keyset_desc(query, &order, before, filter.limit);
        },
    )
}

/// The events page `filter` asks for, its shop filter matching `shops` (as
/// [`runs_query`]).
pub(crate) fn events_query<'a, DB>(
    filter: &'a EventFilter,
    shops: Option<&'a ShopMatch>,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    union(
        ShopMatch::branches(shops),
        &EVENT_ORDER,
        filter.limit,
        |query, shop_cond| {
            query.push("SELECT * FROM monitor_events WHERE 1 = 1");
            // Types and sources are lowercase words; the parameter is lowered to match.
            if let Some(event_type) = &filter.event_type {
                query
                    .push(" AND event_type = ")
                    .push_bind(event_type.to_ascii_lowercase());
            }
            if let Some(source) = &filter.source {
                query
                    .push(" AND source = ")
                    .push_bind(source.to_ascii_lowercase());
            }
            shop(query, "shop_id", shop_cond);
            eq_text(query, "request_id", &filter.request_id);
            range(query, "occurred_at", filter.from, filter.to);
            let before = filter.before.as_ref().map(|c| {
                vec![
                    Key::Int(c.occurred_at),
                    Key::Text(&c.producer),
                    Key::Int(c.producer_seq),
                    Key::Text(&c.event_id),
                ]
            });
            keyset_desc(query, &EVENT_ORDER, before, filter.limit);
        },
    )
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
        let plan = RunsPlan::default();
        let mut query = runs_query::<sqlx::Postgres>(&filter, &plan);
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
            runs_query::<sqlx::Sqlite>(&filter, &RunsPlan::default())
                .sql()
                .to_owned()
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

    #[test]
    fn a_shop_prefix_ends_below_the_next_prefix() {
        assert_eq!(prefix_end("casa").as_deref(), Some("casb"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        for shop in ["casa", "casa-verde.myshopify.com", "casa\u{10FFFF}x"] {
            assert!(shop >= "casa" && shop < prefix_end("casa").unwrap().as_str());
        }
        assert!("casb" >= prefix_end("casa").unwrap().as_str());
    }

    #[test]
    fn shops_are_one_index_range_each_and_a_broad_prefix_is_checked_per_row() {
        let filter = RunFilter {
            shop_id: Some("Casa".into()),
            model: Some("Gemini".into()),
            limit: 10,
            ..Default::default()
        };
        let plan = |shops: ShopMatch| RunsPlan {
            shops: Some(shops),
            rare_error: false,
        };
        let one = plan(ShopMatch::of("casa", vec!["casa-verde".into()]));
        assert_eq!(
            runs_query::<sqlx::Sqlite>(&filter, &one).sql(),
            "SELECT * FROM render_runs WHERE 1 = 1 AND lower(shop_id) = ? \
             AND lower(model) = ? ORDER BY started_at DESC, run_id DESC LIMIT ?"
        );
        let two = plan(ShopMatch::of(
            "casa",
            vec!["casa-azul".into(), "casa-verde".into()],
        ));
        let branch = "SELECT * FROM render_runs WHERE 1 = 1 AND lower(shop_id) = $? \
                      AND lower(model) = $? ORDER BY started_at DESC, run_id DESC LIMIT $?";
        let sql = runs_query::<sqlx::Postgres>(&filter, &two).sql().to_owned();
        let numbered = (1..=7).fold(sql, |sql, n| sql.replacen(&format!("${n}"), "$?", 1));
        assert_eq!(
            numbered,
            format!(
                "SELECT * FROM ({branch}) AS branch0 UNION ALL SELECT * FROM ({branch}) \
                 AS branch1 ORDER BY started_at DESC, run_id DESC LIMIT $?"
            )
        );
        let many: Vec<String> = (0..=MAX_SHOP_BRANCHES)
            .map(|n| format!("casa{n}"))
            .collect();
        let broad = plan(ShopMatch::of("casa", many));
        assert_eq!(broad.shops, Some(ShopMatch::Broad("casa".into())));
        assert!(runs_query::<sqlx::Sqlite>(&filter, &broad)
            .sql()
            .contains(" AND substr(lower(shop_id), 1, 4) = ?"));
        assert_eq!(ShopMatch::of("casa", vec![]), ShopMatch::Nothing);
    }

    #[test]
    fn a_rare_error_code_reads_its_runs_and_a_common_one_checks_each_run() {
        let filter = RunFilter {
            error_code: Some("Provider_Error".into()),
            limit: 10,
            ..Default::default()
        };
        let sql = |rare_error| {
            let plan = RunsPlan {
                shops: None,
                rare_error,
            };
            runs_query::<sqlx::Sqlite>(&filter, &plan).sql().to_owned()
        };
        let tail = " ORDER BY started_at DESC, run_id DESC LIMIT ?";
        assert_eq!(
            sql(true),
            format!(
                "SELECT * FROM render_runs WHERE 1 = 1 AND run_id IN (SELECT run_id FROM \
                 variant_results WHERE error_code <> 'unspecified' AND error_code = ?){tail}"
            )
        );
        assert_eq!(
            sql(false),
            format!(
                "SELECT * FROM render_runs WHERE 1 = 1 AND (SELECT 1 FROM \
                 variant_results AS v WHERE v.run_id = render_runs.run_id AND \
                 v.error_code <> 'unspecified' AND v.error_code = ? LIMIT 1) IS NOT NULL{tail}"
            )
        );
    }

    #[test]
    fn sorting_by_duration_reads_only_runs_with_one() {
        let filter = RunFilter {
            order: RunOrder::Duration,
            min_duration_ms: Some(5),
            before: Some((9, "r".into())),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(
            runs_query::<sqlx::Sqlite>(&filter, &RunsPlan::default()).sql(),
            "SELECT * FROM render_runs WHERE 1 = 1 AND total_duration_ms IS NOT NULL \
             AND total_duration_ms >= ? AND (total_duration_ms, run_id) < (?, ?) \
             ORDER BY total_duration_ms DESC, run_id DESC LIMIT ?"
        );
    }
}
