//! `telemetry-collector stream info | create | update [--dry-run]`, run as an operator
//! runs it (the binary, settings in the environment), against the shared broker; and
//! the warning a collector logs when the stream it finds differs from its spec.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::stream::StorageType;
use test_support::Isolation;

/// Runs `telemetry-collector stream ...` on `iso`'s stream with `extra` settings; the
/// exit code, stdout and stderr.
fn stream_command(iso: &Isolation, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
    let max_bytes = Isolation::STREAM_MAX_BYTES.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_telemetry-collector"))
        .arg("stream")
        .args(args)
        .env("NATS_URL", &iso.nats_url)
        .env("TELEMETRY_STREAM", &iso.stream)
        .env("TELEMETRY_SUBJECT_PREFIX", &iso.prefix)
        .env("TELEMETRY_STREAM_MAX_BYTES", &max_bytes)
        .envs(extra.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run telemetry-collector stream");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `iso`'s stream created by someone else: the configured spec changed by `change`.
async fn stream_created_as(
    iso: &Isolation,
    change: impl FnOnce(&mut async_nats::jetstream::stream::Config),
) {
    let client = async_nats::connect(iso.nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut config = telemetry_proto::StreamSpec::new(iso.stream.clone(), common::subjects(iso))
        .with_max_bytes(Isolation::STREAM_MAX_BYTES)
        .unwrap()
        .config();
    change(&mut config);
    test_support::create_stream(&js, config).await;
}

async fn stream_config(iso: &Isolation) -> async_nats::jetstream::stream::Config {
    let client = async_nats::connect(iso.nats_url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.get_stream(&iso.stream)
        .await
        .expect("the stream exists")
        .cached_info()
        .config
        .clone()
}

#[tokio::test]
async fn create_info_and_update_keep_the_stream_to_the_configured_spec() {
    let iso = Isolation::new();

    let (code, _, stderr) = stream_command(&iso, &["info"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("stream {} does not exist", iso.stream)),
        "{stderr}"
    );
    assert!(stderr.contains("stream create"), "{stderr}");
    let (code, _, stderr) = stream_command(&iso, &["update"], &[]);
    assert_eq!(code, 1, "update does not create: {stderr}");

    let (code, stdout, stderr) = stream_command(&iso, &["create"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("created:"), "{stdout}");
    assert!(stdout.contains(&format!("{}.v1.>", iso.prefix)), "{stdout}");
    let config = stream_config(&iso).await;
    assert_eq!(config.max_bytes, Isolation::STREAM_MAX_BYTES);
    assert_eq!(config.subjects, vec![format!("{}.v1.>", iso.prefix)]);

    let (code, stdout, _) = stream_command(&iso, &["info"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("matches the configured spec"), "{stdout}");
    assert!(stdout.contains("messages          0"), "{stdout}");
    let (code, stdout, _) = stream_command(&iso, &["create"], &[]);
    assert_eq!(code, 0, "create on an existing stream is not an error");
    assert!(stdout.contains("already exists; left as it is"), "{stdout}");

    // The operator raises the cap: the dry run says so and changes nothing.
    let bigger = (Isolation::STREAM_MAX_BYTES * 2).to_string();
    let bigger_cap = [("TELEMETRY_STREAM_MAX_BYTES", bigger.as_str())];
    let (code, stdout, _) = stream_command(&iso, &["info"], &bigger_cap);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("differs from the configured spec"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "max_bytes: {} (configured {bigger})",
            Isolation::STREAM_MAX_BYTES
        )),
        "{stdout}"
    );
    let (code, stdout, stderr) = stream_command(&iso, &["update", "--dry-run"], &bigger_cap);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "max_bytes         {} -> {bigger}",
            Isolation::STREAM_MAX_BYTES
        )),
        "{stdout}"
    );
    assert!(stdout.contains("dry run: nothing changed"), "{stdout}");
    assert_eq!(
        stream_config(&iso).await.max_bytes,
        Isolation::STREAM_MAX_BYTES
    );

    let (code, stdout, stderr) = stream_command(&iso, &["update"], &bigger_cap);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("updated:"), "{stdout}");
    assert_eq!(
        stream_config(&iso).await.max_bytes,
        Isolation::STREAM_MAX_BYTES * 2
    );
    let (_, stdout, _) = stream_command(&iso, &["update"], &bigger_cap);
    assert!(stdout.contains("already matches"), "{stdout}");
}

#[tokio::test]
async fn update_refuses_what_the_broker_cannot_change_and_changes_nothing() {
    let iso = Isolation::new();
    stream_created_as(&iso, |config| {
        config.storage = StorageType::Memory;
        config.max_bytes = 1024 * 1024 * 8;
        config.duplicate_window = Duration::from_secs(5);
    })
    .await;

    let (code, stdout, stderr) = stream_command(&iso, &["update"], &[]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("an update cannot change storage"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(
        stdout.contains("storage           memory -> file"),
        "{stdout}"
    );
    let after = stream_config(&iso).await;
    assert_eq!(after.storage, StorageType::Memory);
    assert_eq!(
        after.duplicate_window,
        Duration::from_secs(5),
        "nothing else applied either"
    );
}

/// Issue 14, item 3: a stream that differs from the configured spec (here: a 5 s
/// duplicate window, shorter than the SDK's retries need) used to pass silently.
#[tokio::test]
async fn a_collector_warns_when_the_stream_it_finds_differs_from_its_spec() {
    let iso = Isolation::new();
    stream_created_as(&iso, |config| {
        config.duplicate_window = Duration::from_secs(5)
    })
    .await;

    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_telemetry-collector"))
        .arg("ingest")
        .env("NATS_URL", &iso.nats_url)
        .env("TELEMETRY_STREAM", &iso.stream)
        .env("TELEMETRY_SUBJECT_PREFIX", &iso.prefix)
        .env(
            "TELEMETRY_STREAM_MAX_BYTES",
            Isolation::STREAM_MAX_BYTES.to_string(),
        )
        .env("DATABASE_URL", &database)
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run telemetry-collector ingest");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let mut seen = Vec::new();
    let warning = loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains("differs from the configured spec") => break line,
            Ok(line) => seen.push(line),
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("no warning within 20 s; the log:\n{}", seen.join("\n"));
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&iso.stream), "{warning}");
    assert!(
        warning.contains("duplicate_window: 5s (configured 120s)"),
        "{warning}"
    );
    assert!(warning.contains("stream update"), "{warning}");
    assert_eq!(
        stream_config(&iso).await.duplicate_window,
        Duration::from_secs(5),
        "the collector never changes an existing stream"
    );
}
