//! `docker-compose.yml` checked against the code: every environment variable a service
//! sets must be one its binary accepts (read from the binaries' own clap definitions,
//! not from a copied list), every value must pass the binary's own start-up checks, and
//! the hosts and ports of URLs, listen addresses, published ports and health checks must
//! line up between services. The mutation test proves each check fires.

#[path = "compose/checks.rs"]
mod checks;
/// The `demo-traffic` binary's flags, from the binary's own file.
#[path = "../src/bin/demo-traffic/args.rs"]
mod demo_args;
#[path = "compose/model.rs"]
mod model;

use serde_norway::Value;

use checks::problems;
use model::{interpolate, load, parse_compose};

#[test]
fn the_compose_file_uses_only_accepted_settings_and_its_ports_line_up() {
    let services = parse_compose(load()).unwrap();
    for name in ["nats", "postgres", "collector", "renderer", "demo-traffic"] {
        assert!(services.contains_key(name), "service {name} is missing");
    }
    let found = problems(&services);
    assert!(
        found.is_empty(),
        "docker-compose.yml:\n{}",
        found.join("\n")
    );
}

#[test]
fn each_kind_of_mismatch_is_caught() {
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
            map.remove(last);
        } else {
            map.insert(
                Value::String(last.into()),
                serde_norway::from_str(value).unwrap(),
            );
        }
    }
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
    ];
    for (path, value, expected) in cases {
        let mut doc = load();
        set(&mut doc, path, value);
        let found = match parse_compose(doc) {
            Ok(services) => problems(&services),
            Err(err) => vec![err],
        };
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "{path:?} = {value}: expected a problem mentioning {expected:?}, got {found:#?}"
        );
    }
}

#[test]
fn flags_of_the_binaries_main_are_known_too() {
    // `--log-format` is read by `main`, on the collector's root command (global) and in
    // the renderer's `Cli`: a compose file may set it on either service.
    let mut doc = load();
    for service in ["collector", "renderer"] {
        let env = &mut doc["services"][service]["environment"];
        let Value::Mapping(map) = env else {
            panic!("{service} has no environment mapping")
        };
        map.insert("LOG_FORMAT".into(), "json".into());
    }
    let found = problems(&parse_compose(doc).unwrap());
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn compose_interpolation_takes_the_default() {
    assert_eq!(interpolate("a${X:-b}c").unwrap(), "abc");
    assert_eq!(interpolate("${X-}").unwrap(), "");
    assert_eq!(interpolate("$$HOME").unwrap(), "$HOME");
    assert!(interpolate("${X}").is_err());
}
