//! The `renderer` binary: one-line start-up errors, and SIGTERM flushes telemetry.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use telemetry_proto::v1::envelope::Body;
use test_support::{free_port, Isolation};

use crate::helpers::{read_envelopes, records, request};

/// The renderer binary, without the settings a developer's environment might carry.
fn renderer() -> Command {
    clean(Command::new(env!("CARGO_BIN_EXE_renderer")))
}

/// `command` without the environment variables that would change what the tests expect.
fn clean(mut command: Command) -> Command {
    for var in [
        "SHOPIFY_API_SECRET",
        "RENDER_PROVIDER",
        "GEMINI_API_KEY",
        "TELEMETRY",
    ] {
        command.env_remove(var);
    }
    command
}

/// The renderer binary run by `prlimit` with its address space capped at `bytes`: an
/// allocation past the cap fails (and aborts the process) as it would on a host that
/// is out of memory.
pub(crate) fn renderer_with_address_space_limit(bytes: u64) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--as={bytes}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_renderer"));
    clean(command)
}

/// Starts the renderer binary on a free port, publishing to `isolation`'s stream, and
/// waits until it answers `/healthz`. Returns the child and its address.
pub(crate) async fn spawn_renderer(
    isolation: &Isolation,
    image_store: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> (std::process::Child, String) {
    spawn_command(renderer(), isolation, image_store, extra_env).await
}

/// [`spawn_renderer`] with another command line for the binary (e.g.
/// [`renderer_with_address_space_limit`]).
pub(crate) async fn spawn_command(
    command: Command,
    isolation: &Isolation,
    image_store: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> (std::process::Child, String) {
    spawn_with_stdout(command, Stdio::null(), isolation, image_store, extra_env).await
}

/// [`spawn_renderer`] with the binary's log (stdout) piped to the test, for tests that
/// read what it logged (set `LOG_FORMAT` and `RUST_LOG` in `extra_env`).
pub(crate) async fn spawn_renderer_logging(
    isolation: &Isolation,
    image_store: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> (std::process::Child, String) {
    spawn_with_stdout(
        renderer(),
        Stdio::piped(),
        isolation,
        image_store,
        extra_env,
    )
    .await
}

async fn spawn_with_stdout(
    mut command: Command,
    stdout: Stdio,
    isolation: &Isolation,
    image_store: &std::path::Path,
    extra_env: &[(&str, &str)],
) -> (std::process::Child, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let child = command
        .env("RENDERER_ADDR", &addr)
        .env("NATS_URL", &isolation.nats_url)
        .env("TELEMETRY_SUBJECT_PREFIX", &isolation.prefix)
        .env("TELEMETRY_STREAM", &isolation.stream)
        .env(
            "TELEMETRY_STREAM_MAX_BYTES",
            Isolation::STREAM_MAX_BYTES.to_string(),
        )
        .env("IMAGE_STORE_DIR", image_store)
        .env("RUST_LOG", "warn")
        .envs(extra_env.iter().copied())
        .stdout(stdout)
        .spawn()
        .expect("start the renderer binary");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "binary did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, addr)
}

/// Sends SIGTERM and asserts the binary exits successfully.
pub(crate) async fn terminate(mut child: std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn a_bad_setting_fails_start_up_with_one_line_naming_it() {
    let output = renderer()
        .env("VARIANT_CONCURRENCY", "0")
        .output()
        .expect("run the renderer binary");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("VARIANT_CONCURRENCY"), "{stderr}");
}

#[test]
fn an_address_in_use_fails_start_up_with_one_line_naming_it() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let store = tempfile::tempdir().unwrap();
    let output = renderer()
        .env("TELEMETRY", "off")
        .env("RENDERER_ADDR", &addr)
        .env("IMAGE_STORE_DIR", store.path())
        .output()
        .expect("run the renderer binary");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("renderer: cannot listen on {addr}: ")),
        "{stderr}"
    );
    // The cause once, not repeated by the error chain.
    assert_eq!(last.matches("os error").count(), 1, "{stderr}");
}

#[tokio::test]
async fn sigterm_stops_the_binary_after_flushing_telemetry() {
    let isolation = Isolation::new();
    let store = tempfile::tempdir().unwrap();
    let (child, addr) = spawn_renderer(&isolation, store.path(), &[]).await;
    let client = reqwest::Client::new();
    let response = client
        .post(format!(
            "http://{addr}/app-proxy/see-it-now/render?shop=bin.myshopify.com"
        ))
        .header("x-request-id", "req-binary")
        .json(&request(&["a", "b"]).body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    terminate(child).await;

    // Everything was published before exit: 1 event, run start, 2+2 variants, completion,
    // and the final ProducerStats.
    let envelopes = read_envelopes(
        &isolation.nats_url,
        &isolation.stream,
        8,
        Duration::from_secs(2),
    )
    .await;
    let final_stats = envelopes.iter().any(|e| {
        matches!(&e.body, Some(Body::ProducerStats(stats)) if stats.r#final && stats.dropped == 0)
    });
    assert!(final_stats, "no final ProducerStats: {envelopes:#?}");
    let records = records(envelopes);
    assert_eq!(records.len(), 7, "{records:#?}");
    assert!(records.iter().all(|e| e.request_id == "req-binary"));
}

/// Renders from `clients` loops until the server stops answering; the run ids of the
/// renders that got a 200.
async fn render_until_refused(addr: String, client: reqwest::Client, tag: usize) -> Vec<String> {
    let mut ok = Vec::new();
    for n in 0.. {
        let response = client
            .post(format!(
                "http://{addr}/app-proxy/see-it-now/render?shop=load.myshopify.com"
            ))
            .header("x-request-id", format!("req-load-{tag}-{n}"))
            .json(&request(&["a", "b"]).body)
            .send()
            .await;
        let Ok(response) = response else { break };
        if response.status() != 200 {
            break;
        }
        let body: serde_json::Value = response.json().await.unwrap();
        ok.push(body["runId"].as_str().expect("runId").to_owned());
    }
    ok
}

#[tokio::test]
async fn sigterm_under_steady_load_flushes_every_answered_render() {
    let isolation = Isolation::new();
    let store = tempfile::tempdir().unwrap();
    let (child, addr) =
        spawn_renderer(&isolation, store.path(), &[("LOCAL_LATENCY_MS", "20")]).await;
    let client = reqwest::Client::new();

    // Four clients render in a loop; SIGTERM lands while requests are in flight.
    let clients: Vec<_> = (0..4)
        .map(|tag| tokio::spawn(render_until_refused(addr.clone(), client.clone(), tag)))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    terminate(child).await;
    let mut answered = Vec::new();
    for client in clients {
        answered.extend(client.await.unwrap());
    }
    assert!(
        answered.len() >= 8,
        "steady load: {} renders",
        answered.len()
    );

    // Per answered render: 1 event, run start, 2 variant starts, 2 results, completion.
    let envelopes = read_envelopes(
        &isolation.nats_url,
        &isolation.stream,
        answered.len() * 7 + 1,
        Duration::from_secs(5),
    )
    .await;
    let final_stats = envelopes
        .iter()
        .find_map(|e| match &e.body {
            Some(Body::ProducerStats(stats)) if stats.r#final => Some(stats.clone()),
            _ => None,
        })
        .expect("a final ProducerStats");
    assert_eq!(final_stats.dropped, 0, "{final_stats:?}");
    assert_eq!(
        final_stats.published, final_stats.emitted,
        "{final_stats:?}"
    );
    let completed: std::collections::HashSet<String> = envelopes
        .iter()
        .filter_map(|e| match &e.body {
            Some(Body::RunCompleted(done)) => Some(done.run_id.clone()),
            _ => None,
        })
        .collect();
    for run_id in &answered {
        assert!(
            completed.contains(run_id),
            "run {run_id} answered but not flushed"
        );
    }
    assert_eq!(records(envelopes).len(), answered.len() * 7);
}
