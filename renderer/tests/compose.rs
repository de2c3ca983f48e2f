//! `docker-compose.yml` checked against the code: every environment variable a service
//! sets must be one its binary accepts (read from the binaries' own clap definitions,
//! not from a copied list), every value must pass the binary's own start-up checks, and
//! the hosts and ports of URLs, listen addresses, published ports and health checks must
//! line up between services. The mutation test proves each check fires.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use clap::{CommandFactory, Parser};
use renderer::demo_traffic::DemoArgs;
use reqwest::Url;
use serde_norway::Value;

/// The compose file, from the workspace root.
const COMPOSE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");
/// Read by `tracing_subscriber::EnvFilter` in the collector's and renderer's `main`,
/// not by clap: the one variable outside the flag definitions.
const LOG_ENV: &str = "RUST_LOG";
/// nats-server's client port when `-p` is not given.
const NATS_DEFAULT_PORT: u16 = 4222;
/// Postgres' port when the URL names none.
const POSTGRES_DEFAULT_PORT: u16 = 5432;

/// Which of our binaries a service runs (the first word of its `command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Binary {
    Collector,
    Renderer,
    DemoTraffic,
}

impl Binary {
    fn of(command: &[String]) -> Option<Self> {
        match command.first().map(String::as_str) {
            Some("telemetry-collector") => Some(Self::Collector),
            Some("renderer") => Some(Self::Renderer),
            Some("demo-traffic") => Some(Self::DemoTraffic),
            _ => None,
        }
    }

    /// The clap command whose flags this service's `command` runs.
    fn clap(self, command: &[String]) -> Result<clap::Command, String> {
        match self {
            Self::Collector => {
                let sub = command
                    .get(1)
                    .ok_or("telemetry-collector needs a subcommand")?;
                // Building propagates the root's global flags (e.g. the log format)
                // into the subcommands.
                let mut root = telemetry_collector::config::Cli::command();
                root.build();
                root.find_subcommand(sub)
                    .cloned()
                    .ok_or_else(|| format!("telemetry-collector has no subcommand {sub:?}"))
            }
            Self::Renderer => Ok(renderer::Cli::command()),
            Self::DemoTraffic => Ok(DemoArgs::command()),
        }
    }

    /// The variable holding the binary's HTTP listen address, if it serves HTTP.
    fn addr_env(self) -> Option<&'static str> {
        match self {
            Self::Collector => Some("COLLECTOR_ADDR"),
            Self::Renderer => Some("RENDERER_ADDR"),
            Self::DemoTraffic => None,
        }
    }
}

/// One service, reduced to what the checks read, `${VAR:-default}` interpolated.
#[derive(Debug, Default)]
struct Service {
    image: String,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    /// Container side of each published port.
    container_ports: Vec<u16>,
    /// The health check's URL, if it calls one.
    health_url: Option<Url>,
    has_healthcheck: bool,
    /// Service name to `condition`.
    depends_on: BTreeMap<String, String>,
}

/// Compose's `${NAME:-default}` / `${NAME-default}`: the default (the checks judge the
/// file as shipped, not the caller's environment). `${NAME}` without a default is an
/// error: the file would not work unset.
fn interpolate(raw: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = rest.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {raw:?}"))?;
            let expr = &body[..end];
            match expr.split_once(":-").or_else(|| expr.split_once('-')) {
                Some((_, default)) => out.push_str(default),
                None => return Err(format!("{raw:?} uses ${{{expr}}} without a default")),
            }
            rest = &body[end + 1..];
        } else {
            return Err(format!(
                "{raw:?}: write $$ for a literal $ or ${{NAME:-default}}"
            ));
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(value: Option<&Value>) -> Result<Vec<String>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|v| scalar(v).ok_or_else(|| format!("not a string: {v:?}")))
            .map(|s| s.and_then(|s| interpolate(&s)))
            .collect(),
        Some(other) => Err(format!("expected a list, got {other:?}")),
    }
}

fn parse_service(value: &Value) -> Result<Service, String> {
    let mut service = Service {
        image: value["image"].as_str().unwrap_or_default().to_owned(),
        command: strings(value.get("command"))?,
        ..Service::default()
    };
    match value.get("environment") {
        None => {}
        Some(Value::Mapping(map)) => {
            for (key, val) in map {
                let key = scalar(key).ok_or("environment key is not a string")?;
                let val = scalar(val).unwrap_or_default();
                service.environment.insert(key, interpolate(&val)?);
            }
        }
        Some(Value::Sequence(items)) => {
            for item in items {
                let item = scalar(item).ok_or("environment entry is not a string")?;
                let (key, val) = item.split_once('=').unwrap_or((&item, ""));
                service
                    .environment
                    .insert(key.to_owned(), interpolate(val)?);
            }
        }
        Some(other) => return Err(format!("environment: unexpected {other:?}")),
    }
    if let Some(Value::Sequence(ports)) = value.get("ports") {
        for port in ports {
            let target = match port {
                Value::Mapping(_) => scalar(&port["target"]).unwrap_or_default(),
                other => {
                    let short = interpolate(&scalar(other).unwrap_or_default())?;
                    short.rsplit(':').next().unwrap_or_default().to_owned()
                }
            };
            let target = target.trim_end_matches("/tcp");
            service.container_ports.push(
                target
                    .parse()
                    .map_err(|_| format!("port {port:?}: no container port"))?,
            );
        }
    }
    if let Some(check) = value.get("healthcheck") {
        service.has_healthcheck = true;
        let test = strings(check.get("test"))?;
        let url = test.iter().find(|word| word.starts_with("http"));
        service.health_url = url
            .map(|url| Url::parse(url).map_err(|err| format!("health check URL {url}: {err}")))
            .transpose()?;
    }
    match value.get("depends_on") {
        None => {}
        Some(Value::Sequence(names)) => {
            for name in names {
                let name = scalar(name).ok_or("depends_on entry is not a string")?;
                service.depends_on.insert(name, "service_started".into());
            }
        }
        Some(Value::Mapping(map)) => {
            for (name, spec) in map {
                let condition = spec["condition"].as_str().unwrap_or("service_started");
                service
                    .depends_on
                    .insert(scalar(name).unwrap_or_default(), condition.to_owned());
            }
        }
        Some(other) => return Err(format!("depends_on: unexpected {other:?}")),
    }
    Ok(service)
}

fn parse_compose(mut doc: Value) -> Result<BTreeMap<String, Service>, String> {
    doc.apply_merge().map_err(|err| err.to_string())?;
    let Some(Value::Mapping(services)) = doc.get("services") else {
        return Err("no services".into());
    };
    services
        .iter()
        .map(|(name, value)| {
            let name = scalar(name).unwrap_or_default();
            let service = parse_service(value).map_err(|err| format!("{name}: {err}"))?;
            Ok((name, service))
        })
        .collect()
}

fn load() -> Value {
    let text = std::fs::read_to_string(COMPOSE_PATH)
        .unwrap_or_else(|err| panic!("read {COMPOSE_PATH}: {err}"));
    serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{COMPOSE_PATH}: {err}"))
}

/// `flag value` (the value after `-p` etc. in a third-party command line).
fn flag_value(command: &[String], flags: &[&str]) -> Option<String> {
    command
        .windows(2)
        .find(|pair| flags.contains(&pair[0].as_str()))
        .map(|pair| pair[1].clone())
}

/// Turns the service's environment into command-line flags of its binary (via each
/// flag's `env` name) and runs the binary's own parse and start-up checks on them.
fn check_binary(name: &str, binary: Binary, service: &Service, problems: &mut Vec<String>) {
    let clap = match binary.clap(&service.command) {
        Ok(clap) => clap,
        Err(err) => return problems.push(format!("{name}: {err}")),
    };
    let mut argv = service.command.clone();
    for (key, value) in &service.environment {
        if key == LOG_ENV && binary != Binary::DemoTraffic {
            continue;
        }
        let arg = clap
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == key.as_str()));
        let Some(arg) = arg else {
            problems.push(format!(
                "{name}: sets {key}, which {} does not accept",
                service.command.join(" ")
            ));
            continue;
        };
        let long = arg
            .get_long()
            .expect("every env-backed flag has a long name");
        if arg.get_action().takes_values() {
            argv.push(format!("--{long}={value}"));
        } else if value == "true" || value == "1" {
            argv.push(format!("--{long}"));
        }
    }
    let checked = match binary {
        Binary::Collector => {
            use telemetry_collector::config::{Cli, Command};
            match Cli::try_parse_from(&argv) {
                Err(err) => Err(err.to_string()),
                Ok(Cli {
                    command: Command::Serve(args),
                    ..
                }) => args
                    .settings()
                    .and_then(|settings| settings.validate().map(|_| ()))
                    .map_err(|err| err.to_string()),
                Ok(_) => Err("the collector service must run `serve`".into()),
            }
        }
        Binary::Renderer => renderer::Cli::try_parse_from(&argv)
            .map_err(|err| err.to_string())
            .and_then(|cli| cli.settings().map(|_| ()).map_err(|err| err.to_string())),
        Binary::DemoTraffic => DemoArgs::try_parse_from(&argv)
            .map(|_| ())
            .map_err(|err| err.to_string()),
    };
    if let Err(err) = checked {
        problems.push(format!("{name}: {}", err.trim()));
    }
}

/// Every way `docker-compose.yml` can disagree with the code or with itself.
fn problems(services: &BTreeMap<String, Service>) -> Vec<String> {
    let mut problems = Vec::new();
    let runs = |pred: &dyn Fn(&Service) -> bool| -> Vec<&String> {
        services
            .iter()
            .filter(|(_, s)| pred(s))
            .map(|(n, _)| n)
            .collect()
    };
    // `name` must reach `target` only once it is healthy.
    let needs = |problems: &mut Vec<String>, name: &str, what: &str, target: &str| {
        let service = &services[name];
        if service.depends_on.get(target).map(String::as_str) != Some("service_healthy") {
            problems.push(format!(
                "{name}: {what} points at {target}, so depends_on.{target} needs condition: service_healthy"
            ));
        }
        if !services.get(target).is_some_and(|t| t.has_healthcheck) {
            problems.push(format!(
                "{target}: {name} waits for it, so it needs a healthcheck"
            ));
        }
    };
    let nats_services = runs(&|s| s.image.starts_with("nats:"));
    let pg_services = runs(&|s| s.image.starts_with("postgres:"));
    for name in &nats_services {
        let nats = &services[*name];
        if !nats
            .command
            .iter()
            .any(|w| w == "-js" || w == "--jetstream")
        {
            problems.push(format!("{name}: nats-server needs -js (JetStream)"));
        }
        let monitor = flag_value(&nats.command, &["-m", "--http_port"]);
        match (&nats.health_url, monitor) {
            (Some(url), Some(port))
                if url.port().map(|p| p.to_string()).as_ref() == Some(&port) => {}
            (url, port) => problems.push(format!(
                "{name}: health check {url:?} must call the monitoring port (-m {port:?})"
            )),
        }
    }
    for (name, service) in services {
        let Some(binary) = Binary::of(&service.command) else {
            continue;
        };
        check_binary(name, binary, service, &mut problems);
        let env = |key: &str| service.environment.get(key);
        for url in env("NATS_URL").into_iter().flat_map(|v| v.split(',')) {
            let url = Url::parse(url.trim()).map_err(|e| e.to_string());
            let (host, port) = match &url {
                Ok(u) => (u.host_str().unwrap_or(""), u.port().unwrap_or(0)),
                Err(_) => ("", 0),
            };
            if !nats_services.iter().any(|n| n.as_str() == host) {
                problems.push(format!("{name}: NATS_URL host {host:?} is no nats service"));
                continue;
            }
            let nats_port = flag_value(&services[host].command, &["-p", "--port"])
                .and_then(|p| p.parse().ok())
                .unwrap_or(NATS_DEFAULT_PORT);
            if port != nats_port {
                problems.push(format!(
                    "{name}: NATS_URL port {port} but {host} listens on {nats_port}"
                ));
            }
            needs(&mut problems, name, "NATS_URL", host);
        }
        if let Some(url) = env("DATABASE_URL").filter(|u| u.starts_with("postgres")) {
            let url = Url::parse(url).ok();
            let host = url.as_ref().and_then(Url::host_str).unwrap_or("");
            let port = url
                .as_ref()
                .and_then(Url::port)
                .unwrap_or(POSTGRES_DEFAULT_PORT);
            if !pg_services.iter().any(|n| n.as_str() == host) {
                problems.push(format!(
                    "{name}: DATABASE_URL host {host:?} is no postgres service"
                ));
            } else {
                if port != POSTGRES_DEFAULT_PORT {
                    problems.push(format!(
                        "{name}: DATABASE_URL port {port}, postgres uses 5432"
                    ));
                }
                needs(&mut problems, name, "DATABASE_URL", host);
            }
        }
        if let Some(url) = env("DEMO_RENDERER_URL") {
            let url = Url::parse(url).ok();
            let host = url.as_ref().and_then(Url::host_str).unwrap_or("");
            let port = url.as_ref().and_then(Url::port_or_known_default);
            let target = services
                .get(host)
                .filter(|s| Binary::of(&s.command) == Some(Binary::Renderer));
            match target.and_then(|t| listen_addr(Binary::Renderer, t)) {
                None => problems.push(format!(
                    "{name}: DEMO_RENDERER_URL host {host:?} is no renderer service"
                )),
                Some(addr) => {
                    if port != Some(addr.port()) {
                        problems.push(format!(
                            "{name}: DEMO_RENDERER_URL port {port:?} but {host} listens on RENDERER_ADDR port {}",
                            addr.port()
                        ));
                    }
                    needs(&mut problems, name, "DEMO_RENDERER_URL", host);
                }
            }
        }
        if let (Some(key), Some(addr)) = (binary.addr_env(), listen_addr(binary, service)) {
            if !addr.ip().is_unspecified() {
                problems.push(format!(
                    "{name}: {key} {addr} is not reachable from other containers (use 0.0.0.0)"
                ));
            }
            for port in &service.container_ports {
                if *port != addr.port() {
                    problems.push(format!(
                        "{name}: publishes container port {port} but {key} port is {}",
                        addr.port()
                    ));
                }
            }
            match &service.health_url {
                None => problems.push(format!("{name}: needs a health check calling /readyz")),
                Some(url) => {
                    let local = matches!(url.host_str(), Some("127.0.0.1" | "localhost"));
                    let path_ok = ["/healthz", "/readyz"].contains(&url.path());
                    if !local || url.port_or_known_default() != Some(addr.port()) || !path_ok {
                        problems.push(format!(
                            "{name}: health check {url} must call 127.0.0.1:{}/readyz or /healthz",
                            addr.port()
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// The listen address a service of ours gets: its environment, else the flag's default.
fn listen_addr(binary: Binary, service: &Service) -> Option<SocketAddr> {
    let key = binary.addr_env()?;
    let value = match service.environment.get(key) {
        Some(value) => value.clone(),
        None => {
            let clap = binary.clap(&service.command).ok()?;
            let arg = clap
                .get_arguments()
                .find(|a| a.get_env().is_some_and(|e| e == key))?;
            arg.get_default_values()
                .first()?
                .to_string_lossy()
                .into_owned()
        }
    };
    value.parse().ok()
}

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
fn compose_interpolation_takes_the_default() {
    assert_eq!(interpolate("a${X:-b}c").unwrap(), "abc");
    assert_eq!(interpolate("${X-}").unwrap(), "");
    assert_eq!(interpolate("$$HOME").unwrap(), "$HOME");
    assert!(interpolate("${X}").is_err());
}
