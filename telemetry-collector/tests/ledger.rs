//! The producers' loss ledger tells the truth (issue 13, items 3–5), on SQLite and on a
//! fresh Postgres database each:
//! - the contract's two invariants are checked: `emitted = published + dropped +
//!   queued` and `dropped = sum of dropped_by_reason`;
//! - the newest stats are those with the highest `producer_seq` (not the greatest
//!   event id), inside one batch and across batches;
//! - a producer that stopped reporting without final stats is flagged as silent, the
//!   page has totals, and a producer whose stored count runs ahead of its (lagging)
//!   published count is explained, not flagged.

mod common;
mod monitor_support;

use std::sync::Arc;
use std::time::Duration;

use common::{batch_of, Backend, TestDb};
use monitor_support::*;
use serde_json::Value;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::store::Store;
use telemetry_proto::v1::{self, envelope::Body as EnvBody};
use tokio_util::sync::CancellationToken;

/// Stats from `producer` with its sequence number, counts and reasons.
#[allow(clippy::too_many_arguments)]
fn stats(
    producer: &str,
    seq: u64,
    emitted: u64,
    published: u64,
    dropped: u64,
    reasons: &[(&str, u64)],
    queue_depth: u64,
    is_final: bool,
) -> v1::Envelope {
    v1::Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: now_ms(),
        shop_id: String::new(),
        request_id: String::new(),
        producer: producer.to_owned(),
        producer_seq: seq,
        body: Some(EnvBody::ProducerStats(v1::ProducerStats {
            emitted,
            published,
            dropped,
            dropped_by_reason: reasons.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
            publish_failures: 0,
            queue_depth,
            started_at: now_ms() - 60_000,
            r#final: is_final,
            service: "renderer".into(),
        })),
    }
}

/// An ordinary event from `producer` (counts as stored).
fn event(producer: &str, seq: u64) -> v1::Envelope {
    v1::Envelope {
        event_id: uuid::Uuid::now_v7().to_string(),
        occurred_at: now_ms(),
        shop_id: "ledger-shop.myshopify.com".into(),
        request_id: format!("req-{producer}-{seq}"),
        producer: producer.to_owned(),
        producer_seq: seq,
        body: Some(EnvBody::Event(v1::Event {
            source: v1::EventSource::Renderer as i32,
            r#type: v1::EventType::SfRenderRequested as i32,
            payload_json: "{}".into(),
            run_id: String::new(),
        })),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn write(store: &Arc<dyn Store>, envelopes: &[v1::Envelope], first_seq: u64, at: i64) {
    store
        .write(&batch_of("telemetry", envelopes, first_seq, at))
        .await
        .expect("write the batch");
}

async fn producers(app: &axum::Router) -> Vec<Value> {
    let answer = get(app, "/api/v1/producers", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json().as_array().expect("a list").clone()
}

fn find<'a>(list: &'a [Value], producer: &str) -> &'a Value {
    list.iter()
        .find(|p| p["producer"] == producer)
        .unwrap_or_else(|| panic!("{producer} missing from {list:?}"))
}

fn problem(list: &[Value], producer: &str) -> String {
    find(list, producer)["problem"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn the_contracts_invariants_are_checked(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = now_ms();
    write(
        &store,
        &[
            // Final, queue empty, 5 events unaccounted for.
            stats("p-unaccounted", 11, 10, 5, 0, &[], 0, true),
            // Not final: 2 queued still add up.
            stats("p-queued", 11, 10, 6, 2, &[("queue_full", 2)], 2, false),
            // Dropped says 0 but the reasons say 4.
            stats("p-reasons", 11, 10, 6, 0, &[("queue_full", 4)], 4, false),
            // Dropped 3 by one reason, 1 by another: adds up, but is still loss.
            stats(
                "p-dropped",
                11,
                10,
                6,
                4,
                &[("queue_full", 3), ("payload_too_large", 1)],
                0,
                false,
            ),
            stats("p-fine", 1, 0, 0, 0, &[], 0, true),
        ],
        1,
        now,
    )
    .await;
    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );
    let list = producers(&app).await;

    let unaccounted = problem(&list, "p-unaccounted");
    assert!(
        unaccounted.contains("emitted 10 but published 5 + dropped 0 + queued 0 = 5"),
        "{unaccounted}"
    );
    assert_eq!(problem(&list, "p-queued"), "2 dropped");
    let reasons = problem(&list, "p-reasons");
    assert!(
        reasons.contains("dropped 0 but dropped_by_reason sums to 4"),
        "{reasons}"
    );
    assert_eq!(problem(&list, "p-dropped"), "4 dropped");
    assert_eq!(find(&list, "p-fine")["problem"], Value::Null);

    let page = get(&app, "/monitor/producers", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("emitted 10 but published 5 + dropped 0 + queued 0 = 5"));
    assert!(page
        .body
        .contains("dropped 0 but dropped_by_reason sums to 4"));
}
on_both_backends!(the_contracts_invariants_are_checked);

async fn the_newest_stats_are_the_highest_producer_seq(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = now_ms();
    // Across batches: seq 1000 is stored first; seq 3, created later (greater event
    // id), arrives after it and must not win.
    let newest = stats("p-across", 1000, 999, 999, 0, &[], 0, true);
    let older = stats("p-across", 3, 2, 2, 0, &[], 0, false);
    assert!(older.event_id > newest.event_id);
    write(&store, std::slice::from_ref(&newest), 1, now).await;
    write(&store, std::slice::from_ref(&older), 2, now).await;
    // The other way round across batches: the older first, then the newest.
    let newest_b = stats("p-later", 50, 49, 49, 0, &[], 0, true);
    let older_b = stats("p-later", 7, 6, 5, 0, &[], 1, false);
    write(&store, std::slice::from_ref(&older_b), 3, now).await;
    write(&store, std::slice::from_ref(&newest_b), 4, now).await;
    // Inside one batch, in either order.
    let newest_c = stats("p-within", 1000, 999, 999, 0, &[], 0, true);
    let older_c = stats("p-within", 3, 2, 2, 0, &[], 0, false);
    write(&store, &[newest_c.clone(), older_c], 5, now).await;
    let older_d = stats("p-within-rev", 3, 2, 2, 0, &[], 0, false);
    let newest_d = stats("p-within-rev", 1000, 999, 999, 0, &[], 0, true);
    write(&store, &[older_d, newest_d.clone()], 7, now).await;

    let app = app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    );
    let list = producers(&app).await;
    for (producer, winner) in [
        ("p-across", &newest),
        ("p-later", &newest_b),
        ("p-within", &newest_c),
        ("p-within-rev", &newest_d),
    ] {
        let row = find(&list, producer);
        let Some(EnvBody::ProducerStats(body)) = &winner.body else {
            unreachable!()
        };
        assert_eq!(row["emitted"], body.emitted, "{producer}: {row}");
        assert_eq!(row["is_final"], true, "{producer}: {row}");
        assert_eq!(
            row["stats_event_id"],
            winner.event_id.as_str(),
            "{producer}: {row}"
        );
        assert_eq!(row["stats_seq"], winner.producer_seq, "{producer}: {row}");
    }
}
on_both_backends!(the_newest_stats_are_the_highest_producer_seq);

async fn a_silent_producer_is_flagged_and_the_page_has_totals(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = now_ms();
    let silent_after = Duration::from_secs(30);
    // Killed: its last stats (not final) came 5 minutes ago.
    write(
        &store,
        &[
            event("p-killed", 1),
            stats("p-killed", 2, 1, 1, 0, &[], 0, false),
        ],
        1,
        now - 300_000,
    )
    .await;
    // Stopped cleanly 5 minutes ago: final stats, not silent.
    write(
        &store,
        &[
            event("p-stopped", 1),
            stats("p-stopped", 2, 1, 1, 0, &[], 0, true),
        ],
        3,
        now - 300_000,
    )
    .await;
    // Alive: stats a moment ago say 1 published, and 2 more events were stored since
    // (stats lag): explained, not a problem.
    write(
        &store,
        &[
            event("p-alive", 1),
            stats("p-alive", 2, 1, 1, 0, &[], 0, false),
        ],
        5,
        now - 2_000,
    )
    .await;
    write(&store, &[event("p-alive", 3), event("p-alive", 4)], 7, now).await;

    let monitor = MonitorSettings {
        producer_silent_after: silent_after,
        ..Default::default()
    };
    let app = app(store.clone(), monitor, CancellationToken::new());
    let list = producers(&app).await;
    let killed = problem(&list, "p-killed");
    assert!(
        killed.contains("silent for 5m") && killed.contains("no final stats"),
        "{killed}"
    );
    assert_eq!(find(&list, "p-killed")["silent"], true);
    assert_eq!(find(&list, "p-stopped")["problem"], Value::Null);
    assert_eq!(find(&list, "p-stopped")["silent"], false);
    let alive = find(&list, "p-alive");
    assert_eq!(alive["problem"], Value::Null, "{alive}");
    assert_eq!(alive["silent"], false);
    assert_eq!(alive["stored_events"], 3);
    let note = alive["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("2 stored since its last stats"),
        "stored > published is explained: {alive}"
    );
    assert!(alive["last_received_at"].as_i64().unwrap() >= now);

    let page = get(&app, "/monitor/producers", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("silent for 5m"), "{}", page.body);
    assert!(page.body.contains("2 stored since its last stats"));
    // Totals: 3 producers, 3 emitted, 3 published, 5 stored, 1 silent.
    let totals = page
        .body
        .split(r#"<tr class="totals">"#)
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no totals row: {}", page.body));
    let cells: Vec<&str> = totals
        .split("<td")
        .skip(1)
        .map(|cell| {
            let text = &cell[cell.find('>').unwrap() + 1..];
            text.split("</td>").next().unwrap().trim()
        })
        .collect();
    assert_eq!(cells[0], "3 producers", "{cells:?}");
    assert_eq!(cells.last(), Some(&"1 flagged, 1 silent"), "{cells:?}");
    let numbers: Vec<&str> = cells
        .iter()
        .copied()
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()))
        .collect();
    // emitted, published, dropped, publish failures, queued, stored
    assert_eq!(numbers, ["3", "3", "0", "0", "0", "5"], "{cells:?}");
}
on_both_backends!(a_silent_producer_is_flagged_and_the_page_has_totals);
