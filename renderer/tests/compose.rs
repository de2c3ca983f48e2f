//! `docker-compose.yml` and `docker-compose.cluster.yml` checked against the code: every
//! environment variable a service sets must be one its binary accepts (read from the
//! binaries' own clap definitions, not from a copied list), every value must pass the
//! binary's own start-up checks, and the hosts and ports of URLs, listen addresses,
//! published ports and health checks must line up between services. The NATS nodes
//! are read from their config files (`deploy/nats-cluster/n*.conf`): the cluster's
//! routes, every node in every `NATS_URL`, the stream's replicas, its cap against each
//! node's storage limit. The mutation tests prove each check fires; the loopback test
//! runs the node configs with the nats-server the suite uses and creates the stream
//! at the compose file's settings on them.

#[path = "compose/checks.rs"]
mod checks;
/// The `demo-traffic` binary's flags, from the binary's own file.
#[path = "../src/bin/demo-traffic/args.rs"]
mod demo_args;
#[path = "compose/model.rs"]
mod model;
#[path = "compose/nats_conf.rs"]
mod nats_conf;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_norway::Value;

use checks::{image_problems, problems, NatsNode};
use model::{interpolate, load, parse_compose, runs, Files, CLUSTER, MAIN};
use nats_conf::Conf;

/// Deletes the key instead of setting it.
const REMOVE: &str = "<remove>";

fn set(doc: &mut Value, path: &[&str], value: &str) {
    let mut node = doc;
    for key in &path[..path.len() - 1] {
        node = node.get_mut(*key).unwrap_or_else(|| panic!("no {key}"));
    }
    let last = path[path.len() - 1];
    let Value::Mapping(map) = node else {
        panic!("{path:?} is not in a mapping")
    };
    if value == REMOVE {
        assert!(map.remove(last).is_some(), "{path:?} is not set");
    } else {
        map.insert(
            Value::String(last.into()),
            serde_norway::from_str(value).unwrap(),
        );
    }
}

/// The problems of `file` as shipped, or after changing one value.
fn found(doc: Value, files: &Files) -> Vec<String> {
    match parse_compose(doc) {
        Ok(services) => problems(&services, files),
        Err(err) => vec![err],
    }
}

/// Each case changes one value of `file` and must produce a problem mentioning
/// `expected`.
fn assert_each_caught(file: &str, cases: &[(&[&str], &str, &str)]) {
    for (path, value, expected) in cases {
        let mut doc = load(file);
        set(&mut doc, path, value);
        let found = found(doc, &Files::default());
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{file}: {path:?} = {value}: expected a problem mentioning {expected:?}, got {found:#?}"
        );
    }
}

#[test]
fn the_compose_file_uses_only_accepted_settings_and_its_ports_line_up() {
    let services = parse_compose(load(MAIN)).unwrap();
    for name in ["nats", "postgres", "collector", "renderer", "demo-traffic"] {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    let found = problems(&services, &Files::default());
    assert!(found.is_empty(), "{MAIN}:\n{}", found.join("\n"));
}

#[test]
fn the_cluster_compose_file_uses_only_accepted_settings_and_its_cluster_lines_up() {
    let services = parse_compose(load(CLUSTER)).unwrap();
    for name in [
        "n1",
        "n2",
        "n3",
        "postgres",
        "stream-setup",
        "collector-1",
        "collector-2",
        "renderer",
        "demo-traffic",
    ] {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    let found = problems(&services, &Files::default());
    assert!(found.is_empty(), "{CLUSTER}:\n{}", found.join("\n"));
    // The set-up runs `stream create`, then `stream update`.
    let setup: Vec<Vec<&str>> = services["stream-setup"]
        .runs
        .iter()
        .map(|run| run.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        setup,
        [
            ["telemetry-collector", "stream", "create"],
            ["telemetry-collector", "stream", "update"]
        ]
    );
}

#[test]
fn each_kind_of_mismatch_is_caught() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["services", "renderer", "environment", "IMAGE_STORE_DIR"],
            "/tmp/images",
            "IMAGE_STORE_DIR",
        ),
        (
            &["services", "nats", "volumes"],
            "['nats-data:/var/nats']",
            "JetStream store",
        ),
        (
            &["services", "collector", "environment", "MONITOR_TOKEN"],
            REMOVE,
            "MONITOR_TOKEN",
        ),
        (
            &["services", "renderer", "environment", "RENDERER_PORT"],
            "8081",
            "RENDERER_PORT",
        ),
        (
            &["services", "collector", "environment", "RENDERER_ADDR"],
            "0.0.0.0:1",
            "RENDERER_ADDR",
        ),
        (
            &["services", "renderer", "environment", "LOCAL_FAILURE_RATE"],
            "'2'",
            "LOCAL_FAILURE_RATE",
        ),
        (
            &["services", "collector", "environment", "COLLECTOR_ADDR"],
            "0.0.0.0:9090",
            "publishes container port 8080",
        ),
        (
            &["services", "collector", "ports"],
            "['8080:9090']",
            "container port 9090",
        ),
        (
            &["services", "renderer", "environment", "RENDERER_ADDR"],
            "127.0.0.1:8081",
            "not reachable",
        ),
        (
            &["services", "renderer", "environment", "NATS_URL"],
            "nats://nats:4223",
            "NATS_URL port 4223",
        ),
        (
            &["services", "collector", "environment", "NATS_URL"],
            "nats://broker:4222",
            "NATS_URL host",
        ),
        (
            &["services", "collector", "environment", "NATS_URL"],
            REMOVE,
            "NATS_URL must list every NATS node",
        ),
        (
            &["services", "collector", "environment", "DATABASE_URL"],
            "postgres://u@db/x",
            "DATABASE_URL host",
        ),
        (
            &[
                "services",
                "demo-traffic",
                "environment",
                "DEMO_RENDERER_URL",
            ],
            "http://renderer:8080",
            "DEMO_RENDERER_URL port",
        ),
        (
            &[
                "services",
                "demo-traffic",
                "environment",
                "DEMO_RENDERER_URL",
            ],
            "http://collector:8080",
            "no renderer service",
        ),
        (
            &["services", "collector", "healthcheck", "test"],
            "['CMD', 'curl', '-f', 'http://127.0.0.1:8081/readyz']",
            "health check",
        ),
        (
            &["services", "nats", "healthcheck", "test"],
            "['CMD', 'wget', 'http://127.0.0.1:4222/healthz']",
            "monitoring port",
        ),
        (
            &["services", "nats", "healthcheck", "test"],
            "['CMD', 'wget', 'http://127.0.0.1:8222/healthz?js-enabled-only=true']",
            "js-enabled-only",
        ),
        (
            &["services", "nats", "command"],
            "['-p', '4222', '-m', '8222']",
            "-js",
        ),
        (
            &["services", "demo-traffic", "depends_on"],
            "['renderer']",
            "service_healthy",
        ),
        (
            &["services", "collector", "command"],
            "['telemetry-collector', 'ingest']",
            "serve",
        ),
        (
            &["services", "collector", "environment", "DATABASE_URL"],
            "'${PGURL}'",
            "without a default",
        ),
        (
            &["services", "renderer", "environment", "TELEMETRY_STREAM"],
            "OTHER",
            "TELEMETRY_STREAM differs between services",
        ),
        (
            &[
                "services",
                "renderer",
                "environment",
                "TELEMETRY_STREAM_REPLICAS",
            ],
            "'3'",
            "TELEMETRY_STREAM_REPLICAS is 3 but there are 1 NATS node(s)",
        ),
        (
            &["services", "renderer", "ports"],
            "['8080:8081']",
            "host port 8080 is published by collector and renderer",
        ),
    ];
    assert_each_caught(MAIN, cases);
}

#[test]
fn each_kind_of_cluster_mismatch_is_caught() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["services", "n2", "healthcheck", "test"],
            "['CMD', 'wget', '-q', '-O', '/dev/null', 'http://127.0.0.1:8222/healthz?js-enabled-only=true']",
            "n2: health check http://127.0.0.1:8222/healthz?js-enabled-only=true must call /healthz without js-enabled-only",
        ),
        (
            &["services", "n3", "healthcheck", "test"],
            "['CMD', 'wget', '-q', '-O', '/dev/null', 'http://127.0.0.1:6222/healthz']",
            "n3: health check",
        ),
        (
            &["services", "renderer", "environment", "NATS_URL"],
            "nats://n1:4222,nats://n2:4222",
            "renderer: NATS_URL must list every NATS node (n1, n2, n3), so a client moves to another when its node goes; it leaves out n3",
        ),
        (
            &["services", "stream-setup", "environment", "NATS_URL"],
            "nats://n1:4222",
            "stream-setup: NATS_URL must list every NATS node",
        ),
        (
            &["services", "collector-2", "environment", "TELEMETRY_STREAM_REPLICAS"],
            "'1'",
            "collector-2: TELEMETRY_STREAM_REPLICAS is 1 on a 3-node cluster",
        ),
        (
            &["services", "stream-setup", "environment", "TELEMETRY_STREAM_REPLICAS"],
            REMOVE,
            "stream-setup: TELEMETRY_STREAM_REPLICAS is 1 on a 3-node cluster",
        ),
        (
            &["services", "renderer", "environment", "TELEMETRY_STREAM_MAX_BYTES"],
            "'4294967296'",
            "TELEMETRY_STREAM_MAX_BYTES differs between services",
        ),
        (
            &["services", "collector-1", "environment", "TELEMETRY_STREAM_MAX_BYTES"],
            "'17179869184'",
            "max_file_store in ./deploy/nats-cluster/n1.conf is 10737418240 bytes, less than TELEMETRY_STREAM_MAX_BYTES 17179869184",
        ),
        (
            &["services", "n1", "volumes"],
            "['n1-data:/data']",
            "n1: its config /etc/nats/n1.conf is not mounted from the repository",
        ),
        (
            &["services", "n3", "volumes"],
            "['./deploy/nats-cluster/n9.conf:/etc/nats/n3.conf:ro', 'n3-data:/data']",
            "n3: ./deploy/nats-cluster/n9.conf cannot be read",
        ),
        (
            &["services", "n2", "volumes"],
            "['./deploy/nats-cluster/n2.conf:/etc/nats/n2.conf:ro', 'n2-data:/var/nats']",
            "n2: the JetStream store",
        ),
        (
            &["services", "stream-setup", "restart"],
            "unless-stopped",
            "stream-setup: collector-1 waits for it to complete, so it runs once: restart must be \"no\"",
        ),
        (
            &["services", "collector-1", "depends_on", "stream-setup"],
            "{condition: service_started}",
            "collector-1: depends_on.stream-setup needs condition: service_completed_successfully",
        ),
        (
            &["services", "collector-2", "environment", "COLLECTOR_CONSUMER"],
            "other-consumer",
            "collectors of one fleet share COLLECTOR_CONSUMER",
        ),
        (
            &["services", "collector-2", "environment", "DATABASE_URL"],
            "postgres://telemetry:telemetry@postgres:5432/elsewhere",
            "collectors of one fleet share DATABASE_URL",
        ),
        (
            &["services", "collector-2", "ports"],
            "['8080:8080']",
            "host port 8080 is published by collector-1 and collector-2",
        ),
        (
            &["services", "collector-2", "depends_on", "n2"],
            REMOVE,
            "collector-2: NATS_URL points at n2, so depends_on.n2 needs condition: service_healthy",
        ),
        (
            &["services", "stream-setup", "command"],
            "['sh', '-c', 'telemetry-collector stream create; telemetry-collector stream update']",
            "is more than the checks read",
        ),
        (
            &["services", "stream-setup", "environment", "COLLECTOR_BATCH_SIZE"],
            "'100'",
            "stream-setup: sets COLLECTOR_BATCH_SIZE, which telemetry-collector stream create does not accept",
        ),
        (
            &["services", "stream-setup", "environment", "TELEMETRY_SUBJECT_PREFIX"],
            "'bad prefix'",
            "TELEMETRY_SUBJECT_PREFIX",
        ),
        (
            &["services", "stream-setup", "environment", "TELEMETRY_STREAM_REPLICAS"],
            "'6'",
            "stream-setup: error: invalid value '6' for '--stream-replicas",
        ),
    ];
    assert_each_caught(CLUSTER, cases);

    // The node configs, changed one at a time.
    let file_cases: &[(&str, &str, &str, &str)] = &[
        (
            "n1.conf",
            "nats-route://n3:6222",
            "nats-route://n3:6223",
            "n1: routes {\"n2:6222\", \"n3:6223\"} must name the other nodes' cluster ports {\"n2:6222\", \"n3:6222\"}",
        ),
        (
            "n2.conf",
            "    nats-route://n1:6222\n",
            "",
            "n2: routes {\"n3:6222\"} must name the other nodes' cluster ports",
        ),
        (
            "n3.conf",
            "    nats-route://n2:6222\n",
            "    nats-route://n2:6222\n    nats-route://n3:6222\n",
            "n3: routes",
        ),
        (
            "n2.conf",
            "server_name: n2",
            "server_name: n1",
            "n1, n2: server_name n1 must be unique",
        ),
        (
            "n3.conf",
            "server_name: n3\n",
            "",
            "n3: a node of a 3-node cluster needs its own server_name",
        ),
        (
            "n1.conf",
            "name: telemetry",
            "name: other",
            "the nodes disagree on the cluster name",
        ),
        (
            "n2.conf",
            "  listen: 0.0.0.0:6222\n",
            "",
            "n2: a node of a 3-node cluster needs a cluster block with a listen port",
        ),
        (
            "n3.conf",
            "max_file_store: 10GiB",
            "max_file_store: 8G",
            "n3: max_file_store in ./deploy/nats-cluster/n3.conf is 8000000000 bytes, less than TELEMETRY_STREAM_MAX_BYTES 8589934592",
        ),
        (
            "n2.conf",
            "http: 0.0.0.0:8222",
            "http: 0.0.0.0:8223",
            "n2: health check Some(Url",
        ),
        (
            "n3.conf",
            "listen: 0.0.0.0:4222",
            "listen: 0.0.0.0:4223",
            "NATS_URL port 4222 but n3 listens on 4223",
        ),
        (
            "n1.conf",
            "store_dir: /data",
            "store_dir: /var/nats",
            "n1: the JetStream store (-sd or store_dir: Some(\"/var/nats\")) must be a mounted volume",
        ),
        (
            "n1.conf",
            "jetstream {",
            "jetstream_off {",
            "n1: nats-server needs -js (JetStream)",
        ),
        (
            "n2.conf",
            "max_file_store: 10GiB",
            "max_file_store: lots",
            "max_file_store \"lots\" is no size",
        ),
    ];
    for (file, from, to, expected) in file_cases {
        let source = format!("./deploy/nats-cluster/{file}");
        let mut files = Files::default();
        files.replace(&source, from, to);
        let found = found(load(CLUSTER), &files);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{file}: {from:?} -> {to:?}: expected a problem mentioning {expected:?}, got {found:#?}"
        );
    }
    let mut files = Files::default();
    files
        .replaced
        .insert("./deploy/nats-cluster/n2.conf".into(), None);
    let found = found(load(CLUSTER), &files);
    assert!(
        found
            .iter()
            .any(|p| p.contains("n2: ./deploy/nats-cluster/n2.conf does not exist")),
        "{found:#?}"
    );
}

#[test]
fn flags_of_the_binaries_main_are_known_too() {
    // `--log-format` is read by `main`, on the collector's root command (global) and in
    // the renderer's `Cli`: a compose file may set it on either service.
    for (file, services) in [
        (MAIN, &["collector", "renderer"][..]),
        (CLUSTER, &["collector-1", "collector-2", "renderer"][..]),
    ] {
        let mut doc = load(file);
        for service in services {
            let env = &mut doc["services"][*service]["environment"];
            let Value::Mapping(map) = env else {
                panic!("{service} has no environment mapping")
            };
            map.insert("LOG_FORMAT".into(), "json".into());
        }
        let found = found(doc, &Files::default());
        assert!(found.is_empty(), "{file}: {found:#?}");
    }
}

#[test]
fn compose_interpolation_takes_the_default() {
    assert_eq!(interpolate("a${X:-b}c").unwrap(), "abc");
    assert_eq!(interpolate("${X-}").unwrap(), "");
    assert_eq!(interpolate("$$HOME").unwrap(), "$HOME");
    assert!(interpolate("${X}").is_err());
}

#[test]
fn a_shell_command_is_read_as_its_command_lines() {
    let words = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    assert_eq!(
        runs(&words(&["sh", "-c", "a b && c"])).unwrap(),
        [words(&["a", "b"]), words(&["c"])]
    );
    assert_eq!(
        runs(&words(&["a", "-c", "x"])).unwrap(),
        [words(&["a", "-c", "x"])]
    );
    for script in ["a; b", "a | b", "a \"b\"", "a $X", "a || b"] {
        assert!(runs(&words(&["sh", "-c", script])).is_err(), "{script}");
    }
}

/// The `major.minor` of the nats-server on PATH (`nats-server: v2.9.10`).
fn tested_nats_line() -> String {
    let output = Command::new("nats-server")
        .arg("--version")
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run `nats-server --version` ({err}): install it with \
                 `bash scripts/services.sh` (Debian's nats-server)"
            )
        });
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let version = text
        .trim()
        .rsplit('v')
        .next()
        .unwrap_or_else(|| panic!("no version in {text:?}"));
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => panic!("no major.minor in {text:?}"),
    }
}

#[test]
fn the_nats_images_are_on_the_line_the_tests_run_against() {
    let line = tested_nats_line();
    for file in [MAIN, CLUSTER] {
        let services = parse_compose(load(file)).unwrap();
        assert!(services.values().any(|s| s.image.starts_with("nats:")));
        let found = image_problems(&services, &line);
        assert!(found.is_empty(), "{file}: {found:#?}");
    }
    // And the check fires.
    let mut doc = load(MAIN);
    set(&mut doc, &["services", "nats", "image"], "nats:2.10-alpine");
    let found = image_problems(&parse_compose(doc).unwrap(), "2.9");
    assert!(
        found
            .iter()
            .any(|p| p.contains("nats:2.10-alpine is not on nats-server 2.9")),
        "{found:#?}"
    );
    let found = image_problems(&parse_compose(load(CLUSTER)).unwrap(), "2.1");
    assert_eq!(found.len(), 3, "2.9.x is not on the 2.1 line: {found:#?}");
}

/// nats-server processes killed when the test ends, however it ends.
struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The node configs of `docker-compose.cluster.yml`, run with the nats-server the
/// suite uses, on loopback: the files as shipped except for the addresses, ports and
/// store directories (compose service names become 127.0.0.1 and free ports). They
/// must form one cluster with a meta leader, report their storage limit as the checks
/// read it, pass `/healthz`, and take the stream at the compose file's settings
/// (replicas 3, the 8 GiB cap reserved on every node).
#[tokio::test]
async fn the_cluster_node_configs_form_a_cluster_on_loopback() {
    let services = parse_compose(load(CLUSTER)).unwrap();
    let files = Files::default();
    let nodes: BTreeMap<&String, NatsNode> = services
        .iter()
        .filter(|(_, s)| s.image.starts_with("nats:"))
        .map(|(name, s)| (name, NatsNode::of(s, &files).unwrap()))
        .collect();
    assert_eq!(nodes.len(), 3);
    // (client, monitoring, cluster) ports per node.
    let ports: BTreeMap<&str, (u16, u16, u16)> = nodes
        .keys()
        .map(|name| {
            let free = test_support::free_port;
            (name.as_str(), (free(), free(), free()))
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut running = Nodes(Vec::new());
    for (name, node) in &nodes {
        let (client, http, cluster_port) = ports[name.as_str()];
        let (_, conf) = node.config.as_ref().expect("a node config");
        let mut conf = conf.clone();
        conf.set("listen", Conf::bare(format!("127.0.0.1:{client}")));
        conf.set("http", Conf::bare(format!("127.0.0.1:{http}")));
        let cluster = conf.block_mut("cluster").expect("a cluster block");
        // Each route to its node's loopback cluster port.
        let routes = node
            .cluster
            .as_ref()
            .unwrap()
            .routes
            .iter()
            .map(|route| {
                let host = reqwest::Url::parse(route).unwrap();
                let host = host.host_str().unwrap();
                let (_, _, port) = ports
                    .get(host)
                    .unwrap_or_else(|| panic!("{name}: route {route} names no node"));
                Conf::bare(format!("nats-route://127.0.0.1:{port}"))
            })
            .collect();
        cluster.set("listen", Conf::bare(format!("127.0.0.1:{cluster_port}")));
        cluster.set("routes", Conf::List(routes));
        let store = dir.path().join(name.as_str());
        conf.block_mut("jetstream")
            .expect("a jetstream block")
            .set("store_dir", Conf::quoted(store.display().to_string()));
        let config = dir.path().join(format!("{name}.conf"));
        std::fs::write(&config, conf.render()).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg(dir.path().join(format!("{name}.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot run `nats-server` ({err}): install it with `bash scripts/services.sh`"
                )
            });
        running.0.push(child);
    }
    let logs = |dir: &Path| {
        nodes
            .keys()
            .map(|name| {
                let log =
                    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                format!("--- {name}.log\n{log}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let http = reqwest::Client::new();
    let started = Instant::now();
    let mut last = String::new();
    'wait: loop {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the nodes formed no healthy cluster within 30 s; last: {last}\n{}",
            logs(dir.path())
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        for (name, node) in &nodes {
            let (_, monitor, _) = ports[name.as_str()];
            let base = format!("http://127.0.0.1:{monitor}");
            let Ok(health) = http.get(format!("{base}/healthz")).send().await else {
                last = format!("{name}: /healthz does not answer");
                continue 'wait;
            };
            if !health.status().is_success() {
                last = format!(
                    "{name}: /healthz {}",
                    health.text().await.unwrap_or_default()
                );
                continue 'wait;
            }
            let jsz: serde_json::Value = http
                .get(format!("{base}/jsz"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let meta = &jsz["meta_cluster"];
            if meta["cluster_size"] != 3 || meta["leader"].as_str().is_none() {
                last = format!("{name}: meta_cluster {meta}");
                continue 'wait;
            }
            assert_eq!(
                meta["name"].as_str(),
                node.cluster.as_ref().unwrap().name.as_deref(),
                "{name}: cluster name"
            );
            assert_eq!(
                jsz["config"]["max_storage"].as_u64(),
                node.max_file_store,
                "{name}: the server reads max_file_store as another number than the checks"
            );
        }
        break;
    }
    // The stream at the settings every service of the compose file has.
    let env = &services["collector-1"].environment;
    let replicas: usize = env["TELEMETRY_STREAM_REPLICAS"].parse().unwrap();
    let max_bytes: i64 = env["TELEMETRY_STREAM_MAX_BYTES"].parse().unwrap();
    assert_eq!(replicas, 3);
    let spec = telemetry_proto::stream::StreamSpec::new(
        telemetry_proto::stream::DEFAULT_STREAM,
        telemetry_proto::subjects::Subjects::new(telemetry_proto::subjects::DEFAULT_PREFIX)
            .unwrap(),
    )
    .with_max_bytes(max_bytes)
    .unwrap()
    .with_replicas(replicas)
    .unwrap();
    let (n1_client, ..) = ports["n1"];
    let client = async_nats::connect(format!("nats://127.0.0.1:{n1_client}"))
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.create_stream(spec.config()).await.unwrap_or_else(|err| {
        panic!(
            "create the stream at replicas {replicas}: {err}\n{}",
            logs(dir.path())
        )
    });
    let started = Instant::now();
    loop {
        let info = stream.info().await.unwrap().clone();
        let cluster = info.cluster.clone().unwrap();
        if cluster.leader.is_some()
            && cluster.replicas.len() == replicas - 1
            && cluster
                .replicas
                .iter()
                .all(|peer| peer.current && !peer.offline)
        {
            assert_eq!(info.config.num_replicas, replicas);
            assert_eq!(info.config.max_bytes, max_bytes);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the stream's replicas did not become current: {cluster:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(running);
}
