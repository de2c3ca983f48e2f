//! SIGTERM while a render is in progress and its client has gone away (issue 13): the
//! binary waits for the render up to `SHUTDOWN_RENDER_DRAIN_MS`, completes what is still
//! unfinished then as `interrupted`, and only then flushes telemetry, so the run never
//! stays `running` in the collector. Every variant hangs (`LOCAL_TIMEOUT_RATE=1`), so a
//! run lasts exactly as long as its variant timeout allows.

use std::io::Read as _;
use std::time::{Duration, Instant};

use renderer::config::{LocalSettings, ProviderSettings};
use serde_json::Value;
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::v1::{
    Envelope, ErrorCode, RunCompleted, RunStatus, VariantResult, VariantStatus,
};
use test_support::Isolation;

use crate::binary::{spawn_renderer_logging, terminate};
use crate::helpers::{read_envelopes, records, request, spawn_collector};

const VARIANTS: [&str; 2] = ["a", "b"];
/// The client gives up on its render this long after sending it.
const CLIENT_GIVES_UP: Duration = Duration::from_millis(1000);
/// SIGTERM goes this long after the render was sent.
const SIGTERM_AT: Duration = Duration::from_millis(1500);

/// What a renderer binary did from SIGTERM to its exit.
struct Stopped {
    /// Its log, one JSON object per line.
    log: Vec<Value>,
    /// From SIGTERM to exit.
    took: Duration,
    /// Everything in the test's stream once it exited.
    envelopes: Vec<Envelope>,
}

impl Stopped {
    /// The fields of the log line with message `message`.
    fn line(&self, message: &str) -> &Value {
        self.log
            .iter()
            .map(|line| &line["fields"])
            .find(|fields| fields["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} log line in {:#?}", self.log))
    }

    /// The run started for `request_id`, its completion and its variants' results.
    fn run(
        &self,
        request_id: &str,
    ) -> (
        String,
        Option<RunCompleted>,
        Vec<VariantResult>,
        Vec<String>,
    ) {
        let records = records(self.envelopes.clone());
        let run_id = records
            .iter()
            .find_map(|e| match &e.body {
                Some(Body::RunStarted(run)) if e.request_id == request_id => {
                    Some(run.run_id.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no run started for {request_id}: {records:#?}"));
        let mut completed = None;
        let mut results = Vec::new();
        let mut started = Vec::new();
        for envelope in records {
            match envelope.body {
                Some(Body::RunCompleted(done)) if done.run_id == run_id => {
                    assert!(completed.is_none(), "completed twice: {done:?}");
                    completed = Some(done);
                }
                Some(Body::VariantResult(result)) if result.run_id == run_id => {
                    results.push(result)
                }
                Some(Body::VariantStarted(start)) if start.run_id == run_id => {
                    started.push(start.variant_id)
                }
                _ => {}
            }
        }
        results.sort_by(|a, b| a.variant_id.cmp(&b.variant_id));
        (run_id, completed, results, started)
    }
}

/// Starts the binary with `env` (every variant hangs), sends a render whose client hangs
/// up at [`CLIENT_GIVES_UP`], sends SIGTERM at [`SIGTERM_AT`] and waits for the exit.
async fn hang_up_then_terminate(
    isolation: &Isolation,
    request_id: &str,
    env: &[(&str, &str)],
) -> Stopped {
    let store = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env.extend([
        ("LOCAL_TIMEOUT_RATE", "1"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
    ]);
    let (mut child, addr) = spawn_renderer_logging(isolation, store.path(), &env).await;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        text
    });

    let sent = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(CLIENT_GIVES_UP)
        .build()
        .unwrap();
    let answer = client
        .post(format!(
            "http://{addr}/app-proxy/see-it-now/render?shop=shutdown.myshopify.com"
        ))
        .header("x-request-id", request_id)
        .json(&request(&VARIANTS).body)
        .send()
        .await;
    let gave_up = answer.expect_err("every variant hangs: the client gives up first");
    assert!(gave_up.is_timeout(), "{gave_up}");
    drop(client);
    tokio::time::sleep(SIGTERM_AT.saturating_sub(sent.elapsed())).await;

    let terminated = Instant::now();
    terminate(child).await;
    let took = terminated.elapsed();
    let log: Vec<Value> = log
        .join()
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();

    // Everything the binary published is in the stream once it has exited: what it
    // published (records) plus the final ProducerStats.
    let mut stopped = Stopped {
        log,
        took,
        envelopes: Vec::new(),
    };
    let published = stopped.line("telemetry flushed")["published"]
        .as_u64()
        .expect("published") as usize;
    stopped.envelopes = read_envelopes(
        &isolation.nats_url,
        &isolation.stream,
        published + 1,
        Duration::from_secs(5),
    )
    .await;
    stopped
}

/// The shutdown line says everything emitted was published, nothing dropped, and how
/// many runs were interrupted; the final `ProducerStats` says the same, and the
/// stream holds exactly what was published.
fn assert_all_published(stopped: &Stopped, interrupted_runs: u64) {
    let flushed = stopped.line("telemetry flushed");
    assert_eq!(flushed["emitted"], flushed["published"], "{flushed}");
    assert_eq!(flushed["dropped"], 0, "{flushed}");
    assert_eq!(flushed["left"], 0, "{flushed}");
    assert_eq!(flushed["interrupted_runs"], interrupted_runs, "{flushed}");
    let stats = stopped
        .envelopes
        .iter()
        .find_map(|e| match &e.body {
            Some(Body::ProducerStats(stats)) if stats.r#final => Some(stats.clone()),
            _ => None,
        })
        .expect("a final ProducerStats");
    assert_eq!(stats.emitted, stats.published, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(
        records(stopped.envelopes.clone()).len() as u64,
        stats.published,
        "the stream holds what was published"
    );
}

/// The collector's row for `run_id` once it is no longer `running` and every variant
/// has a result.
async fn collected(isolation: &Isolation, run_id: &str) -> Value {
    let collector = spawn_collector(isolation).await;
    let detail = collector
        .run_detail(run_id, |detail| {
            detail["run"]["status"] != "running"
                && detail["variants"].as_array().is_some_and(|variants| {
                    variants.len() == VARIANTS.len()
                        && variants.iter().all(|v| v["status"] != "running")
                })
        })
        .await;
    collector.stop().await;
    detail
}

#[tokio::test]
async fn a_render_whose_client_left_finishes_before_exit_when_the_drain_allows() {
    let isolation = Isolation::new();
    // Variants time out 3 s into the run, 1.5 s after SIGTERM: within the drain.
    let stopped = hang_up_then_terminate(
        &isolation,
        "req-drained",
        &[
            ("VARIANT_TIMEOUT_MS", "3000"),
            ("SHUTDOWN_RENDER_DRAIN_MS", "10000"),
        ],
    )
    .await;
    let (run_id, completed, results, started) = stopped.run("req-drained");
    let completed = completed.unwrap_or_else(|| panic!("run {run_id} never completed"));
    assert_eq!(completed.status, RunStatus::Failed as i32, "{completed:?}");
    assert_eq!(
        (
            completed.success_count,
            completed.fail_count,
            completed.timeout_count
        ),
        (0, 0, 2),
        "{completed:?}"
    );
    assert_eq!(started, VARIANTS);
    assert_eq!(results.len(), VARIANTS.len(), "{results:#?}");
    for result in &results {
        assert_eq!(result.status, VariantStatus::Timeout as i32, "{result:?}");
        assert_eq!(result.error_code, ErrorCode::Timeout as i32, "{result:?}");
        assert!(result.latency_ms >= 3000, "{result:?}");
    }
    assert!(
        stopped.took >= Duration::from_millis(1000),
        "exited {:?} after SIGTERM, before the render could finish",
        stopped.took
    );
    assert!(stopped.took < Duration::from_secs(10), "{:?}", stopped.took);

    assert_all_published(&stopped, 0);

    let detail = collected(&isolation, &run_id).await;
    assert_eq!(detail["run"]["status"], "failed", "{detail}");
    assert_eq!(detail["run"]["timeout_count"], 2, "{detail}");
    for variant in detail["variants"].as_array().unwrap() {
        assert_eq!(variant["status"], "timeout", "{variant}");
        assert_eq!(variant["error_code"], "timeout", "{variant}");
    }
}

#[tokio::test]
async fn a_render_unfinished_at_the_drain_deadline_is_completed_as_interrupted() {
    let isolation = Isolation::new();
    // Variants would time out 10 s into the run; the drain ends 0.5 s after SIGTERM.
    // One variant at a time: `a` is rendering at the deadline, `b` never started.
    let stopped = hang_up_then_terminate(
        &isolation,
        "req-interrupted",
        &[
            ("VARIANT_TIMEOUT_MS", "10000"),
            ("VARIANT_CONCURRENCY", "1"),
            ("SHUTDOWN_RENDER_DRAIN_MS", "500"),
        ],
    )
    .await;
    let (run_id, completed, results, started) = stopped.run("req-interrupted");
    let completed = completed.unwrap_or_else(|| panic!("run {run_id} never completed"));
    assert_eq!(
        completed.status,
        RunStatus::Interrupted as i32,
        "{completed:?}"
    );
    // The counts add up: the interrupted variants are failures.
    assert_eq!(
        (
            completed.success_count,
            completed.fail_count,
            completed.timeout_count
        ),
        (0, 2, 0),
        "{completed:?}"
    );
    assert_eq!(started, ["a"], "b never started");
    assert_eq!(results.len(), VARIANTS.len(), "{results:#?}");
    for result in &results {
        assert_eq!(result.status, VariantStatus::Failed as i32, "{result:?}");
        assert_eq!(
            result.error_code,
            ErrorCode::Interrupted as i32,
            "{result:?}"
        );
        assert!(!result.error_message.is_empty(), "{result:?}");
        assert!(!result.final_prompt_hash.is_empty(), "{result:?}");
        assert!(result.output_image_key.is_empty(), "{result:?}");
    }
    // `a` rendered from its start (just after the request came in) to the interruption
    // (2 s after it was sent, with margin for a loaded machine); `b` not at all.
    assert!(results[0].latency_ms >= 1000, "{:?}", results[0]);
    assert_eq!(results[1].latency_ms, 0, "{:?}", results[1]);
    assert!(
        stopped.took >= Duration::from_millis(500),
        "exited {:?} after SIGTERM, before the drain deadline",
        stopped.took
    );
    assert!(
        stopped.took < Duration::from_secs(5),
        "exited {:?} after SIGTERM: the drain deadline was not kept",
        stopped.took
    );

    assert_all_published(&stopped, 1);

    let detail = collected(&isolation, &run_id).await;
    let run = &detail["run"];
    assert_eq!(run["status"], "interrupted", "{detail}");
    assert_eq!(
        (
            &run["success_count"],
            &run["fail_count"],
            &run["timeout_count"]
        ),
        (&Value::from(0), &Value::from(2), &Value::from(0)),
        "{detail}"
    );
    for variant in detail["variants"].as_array().unwrap() {
        assert_eq!(variant["status"], "failed", "{variant}");
        assert_eq!(variant["error_code"], "interrupted", "{variant}");
    }
}

/// A client still waiting when its render is interrupted gets the answer: the run as
/// `interrupted`, each unfinished variant `failed` with `INTERRUPTED`. In-process: the
/// same shutdown as the binary's, from `run_until`'s stop signal.
#[tokio::test]
async fn a_client_still_waiting_gets_the_interrupted_run_as_its_answer() {
    let isolation = Isolation::new();
    let app = crate::helpers::spawn_app(Some(&isolation), |settings| {
        settings.provider = ProviderSettings::Local(LocalSettings {
            timeout_rate: 1.0,
            ..Default::default()
        });
        settings.limits.variant_timeout = Duration::from_secs(30);
        settings.shutdown_render_drain = Duration::from_millis(300);
    })
    .await;
    let render = tokio::spawn({
        let (client, base) = (app.client.clone(), app.base.clone());
        let query = crate::helpers::signed_query(crate::helpers::SHOP, crate::helpers::SECRET);
        async move {
            client
                .post(format!("{base}/app-proxy/see-it-now/render?{query}"))
                .header("x-request-id", "req-waiting")
                .json(&request(&VARIANTS).body)
                .send()
                .await
        }
    });
    // Stop once the run is under way: its start is in the stream.
    crate::helpers::recorded(&isolation, 2, Duration::from_secs(10)).await;
    let report = app.stop().await;
    assert_eq!(report.emitted, report.published, "{report:?}");
    assert_eq!(report.left, 0, "{report:?}");

    let response = render.await.unwrap().expect("the client gets an answer");
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["status"], "interrupted", "{answer}");
    let variants = answer["variants"].as_array().unwrap();
    assert_eq!(variants.len(), VARIANTS.len(), "{answer}");
    for variant in variants {
        assert_eq!(variant["status"], "failed", "{variant}");
        assert_eq!(variant["errorCode"], "INTERRUPTED", "{variant}");
    }
    let completed =
        records(read_envelopes(&isolation.nats_url, &isolation.stream, 0, Duration::ZERO).await)
            .into_iter()
            .find_map(|e| match e.body {
                Some(Body::RunCompleted(done)) => Some(done),
                _ => None,
            })
            .expect("the run's completion was flushed");
    assert_eq!(completed.run_id, answer["runId"].as_str().unwrap());
    assert_eq!(completed.status, RunStatus::Interrupted as i32);
}
