//! The checks: each service's environment against its binary's clap flags and start-up
//! validation, the hosts and ports between services, the NATS nodes against their
//! config files, and, with several nodes, the cluster: routes, every node in every
//! NATS_URL, the stream's replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use clap::{Args as _, CommandFactory, Parser};
use reqwest::Url;
use service_kit::cli::NatsArgs;

use super::model::{Files, Service};
use super::nats_conf::{self, Conf};
use crate::demo_args::DemoArgs;

/// Read by `tracing_subscriber::EnvFilter` in the collector's and renderer's `main`,
/// not by clap: the one variable outside the flag definitions.
const LOG_ENV: &str = "RUST_LOG";
/// nats-server's client port when neither `-p` nor `listen` gives one.
const NATS_DEFAULT_PORT: u16 = 4222;
/// Postgres' port when the URL names none.
const POSTGRES_DEFAULT_PORT: u16 = 5432;
/// The settings that define the stream: every service that may create it or compares
/// it with its own settings at start-up must agree on them.
const STREAM_SETTINGS: [&str; 4] = [
    "TELEMETRY_SUBJECT_PREFIX",
    "TELEMETRY_STREAM",
    "TELEMETRY_STREAM_MAX_BYTES",
    "TELEMETRY_STREAM_REPLICAS",
];
/// Replicas of a stream on a cluster of three or more nodes: any two keep it writable.
const CLUSTER_REPLICAS: usize = 3;

/// Which of our binaries a command line runs (its first word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Collector,
    Renderer,
    DemoTraffic,
}

impl Binary {
    pub fn of(run: &[String]) -> Option<Self> {
        match run.first().map(String::as_str) {
            Some("telemetry-collector") => Some(Self::Collector),
            Some("renderer") => Some(Self::Renderer),
            Some("demo-traffic") => Some(Self::DemoTraffic),
            _ => None,
        }
    }

    /// The clap command whose flags this command line runs.
    fn clap(self, run: &[String]) -> Result<clap::Command, String> {
        match self {
            Self::Collector => {
                let sub = run.get(1).ok_or("telemetry-collector needs a subcommand")?;
                // Building propagates the root's global flags (e.g. the log format)
                // into the subcommands.
                let mut root = telemetry_collector::config::Cli::command();
                root.build();
                let found = root.find_subcommand(sub).cloned();
                match (found, is_stream(run)) {
                    // `stream` has the NATS flags of `serve` (checked in
                    // `check_binary`); until the subcommand exists, that is all.
                    (None, true) => Ok(nats_args()),
                    (Some(stream), true) => match run.get(2) {
                        Some(action) => stream.find_subcommand(action).cloned().ok_or_else(|| {
                            format!("telemetry-collector stream has no subcommand {action:?}")
                        }),
                        None => Err("telemetry-collector stream needs a subcommand".into()),
                    },
                    (found, false) => found
                        .ok_or_else(|| format!("telemetry-collector has no subcommand {sub:?}")),
                }
            }
            Self::Renderer => Ok(renderer::Cli::command()),
            Self::DemoTraffic => Ok(DemoArgs::command()),
        }
    }

    /// The variable holding the command's HTTP listen address, if it serves HTTP.
    fn addr_env(self, run: &[String]) -> Option<&'static str> {
        match self {
            Self::Collector if run.get(1).map(String::as_str) == Some("serve") => {
                Some("COLLECTOR_ADDR")
            }
            Self::Renderer => Some("RENDERER_ADDR"),
            Self::Collector | Self::DemoTraffic => None,
        }
    }

    /// Whether it connects to NATS (takes `NATS_URL` and the stream's settings).
    fn uses_nats(self) -> bool {
        matches!(self, Self::Collector | Self::Renderer)
    }
}

/// `telemetry-collector stream ...`
fn is_stream(run: &[String]) -> bool {
    Binary::of(run) == Some(Binary::Collector) && run.get(1).map(String::as_str) == Some("stream")
}

/// `telemetry-collector serve`
fn is_serve(run: &[String]) -> bool {
    Binary::of(run) == Some(Binary::Collector) && run.get(1).map(String::as_str) == Some("serve")
}

/// The NATS flags both binaries flatten in (`NATS_URL`, `TELEMETRY_*`).
fn nats_args() -> clap::Command {
    NatsArgs::augment_args(clap::Command::new("nats"))
}

/// The value of `key` a command line runs with: the service's environment, else the
/// flag's default.
fn setting(service: &Service, clap: &clap::Command, key: &str) -> Option<String> {
    if let Some(value) = service.environment.get(key) {
        return Some(value.clone());
    }
    let arg = clap
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == key))?;
    Some(
        arg.get_default_values()
            .first()?
            .to_string_lossy()
            .into_owned(),
    )
}

/// `flag value` (the value after `-p` etc. in a third-party command line).
pub fn flag_value(command: &[String], flags: &[&str]) -> Option<String> {
    command
        .windows(2)
        .find(|pair| flags.contains(&pair[0].as_str()))
        .map(|pair| pair[1].clone())
}

/// Turns the service's environment into command-line flags of the binary `run` starts
/// (via each flag's `env` name) and runs the binary's own parse and start-up checks on
/// them.
pub fn check_binary(name: &str, run: &[String], service: &Service, problems: &mut Vec<String>) {
    let Some(binary) = Binary::of(run) else {
        return;
    };
    let clap = match binary.clap(run) {
        Ok(clap) => clap,
        Err(err) => return problems.push(format!("{name}: {err}")),
    };
    // `stream` takes the NATS flags of `serve` and nothing else a service sets: its
    // values are checked by `serve`'s own start-up checks.
    let stream = is_stream(run);
    let nats = nats_args();
    let mut argv = if stream {
        vec!["telemetry-collector".to_owned(), "serve".to_owned()]
    } else {
        run.to_vec()
    };
    for (key, value) in &service.environment {
        if key == LOG_ENV && binary != Binary::DemoTraffic {
            continue;
        }
        let accepts = |clap: &clap::Command| {
            clap.get_arguments()
                .find(|arg| arg.get_env().is_some_and(|env| env == key.as_str()))
                .cloned()
        };
        let arg = match (accepts(&clap), stream) {
            (Some(_), true) => accepts(&nats),
            (arg, _) => arg,
        };
        let Some(arg) = arg else {
            problems.push(format!(
                "{name}: sets {key}, which {} does not accept",
                run.join(" ")
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
                Ok(_) => Err("a collector service must run `serve` (or `stream`)".into()),
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

/// A `nats` service as its command line and config file set it up.
#[derive(Debug, Default)]
pub struct NatsNode {
    /// The config file: its path as the compose file mounts it, and its contents.
    pub config: Option<(String, Conf)>,
    pub client_port: Option<u16>,
    pub http_port: Option<u16>,
    pub jetstream: bool,
    pub store_dir: Option<String>,
    pub max_file_store: Option<u64>,
    pub server_name: Option<String>,
    /// `cluster { name, listen, routes }`.
    pub cluster: Option<ClusterConf>,
}

#[derive(Debug, Default)]
pub struct ClusterConf {
    pub name: Option<String>,
    pub port: Option<u16>,
    pub routes: Vec<String>,
}

impl NatsNode {
    /// Reads the service's `-c` config (mounted from the repository) and its flags,
    /// which override the file as they do in nats-server.
    pub fn of(service: &Service, files: &Files) -> Result<Self, String> {
        let mut node = Self::default();
        if let Some(path) = flag_value(&service.command, &["-c", "--config"]) {
            let source = service
                .binds
                .iter()
                .find(|(_, target)| *target == path)
                .map(|(source, _)| source.clone())
                .ok_or_else(|| format!("its config {path} is not mounted from the repository"))?;
            let conf = nats_conf::parse(&files.read(&source)?)
                .map_err(|err| format!("{source}: {err}"))?;
            let text =
                |conf: &Conf, key: &str| conf.get(key).and_then(Conf::text).map(str::to_owned);
            let port = |conf: &Conf, keys: &[&str]| {
                keys.iter()
                    .find_map(|key| text(conf, key))
                    .map(|value| {
                        nats_conf::port_of(&value)
                            .ok_or_else(|| format!("{source}: no port in {value:?}"))
                    })
                    .transpose()
            };
            node.client_port = port(&conf, &["listen", "port"])?;
            node.http_port = port(&conf, &["http", "http_port", "monitor_port"])?;
            node.server_name = text(&conf, "server_name");
            if let Some(js) = conf.get("jetstream") {
                node.jetstream = !matches!(
                    js.text().map(str::to_ascii_lowercase).as_deref(),
                    Some("false" | "disabled" | "off")
                );
                node.store_dir = text(js, "store_dir");
                node.max_file_store = text(js, "max_file_store")
                    .map(|size| {
                        nats_conf::size(&size)
                            .ok_or_else(|| format!("{source}: max_file_store {size:?} is no size"))
                    })
                    .transpose()?;
            }
            if let Some(cluster) = conf.get("cluster") {
                node.cluster = Some(ClusterConf {
                    name: text(cluster, "name"),
                    port: port(cluster, &["listen", "port"])?,
                    routes: cluster
                        .get("routes")
                        .map(|routes| {
                            routes
                                .items()
                                .iter()
                                .filter_map(|r| r.text())
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            node.config = Some((source, conf));
        }
        let flag = |flags: &[&str]| flag_value(&service.command, flags);
        if let Some(port) = flag(&["-p", "--port"]) {
            node.client_port = Some(port.parse().map_err(|_| format!("-p {port:?}"))?);
        }
        if let Some(port) = flag(&["-m", "--http_port"]) {
            node.http_port = Some(port.parse().map_err(|_| format!("-m {port:?}"))?);
        }
        if service
            .command
            .iter()
            .any(|w| w == "-js" || w == "--jetstream")
        {
            node.jetstream = true;
        }
        if let Some(dir) = flag(&["-sd", "--store_dir"]) {
            node.store_dir = Some(dir);
        }
        if let Some(server_name) = flag(&["-n", "--server_name"]) {
            node.server_name = Some(server_name);
        }
        Ok(node)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port.unwrap_or(NATS_DEFAULT_PORT)
    }
}

/// Every way a compose file can disagree with the code or with itself.
pub fn problems(services: &BTreeMap<String, Service>, files: &Files) -> Vec<String> {
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
    let pg_services = runs(&|s| s.image.starts_with("postgres:"));
    let mut nodes = BTreeMap::new();
    for name in runs(&|s| s.image.starts_with("nats:")) {
        match NatsNode::of(&services[name], files) {
            Ok(node) => {
                nodes.insert(name.clone(), node);
            }
            Err(err) => problems.push(format!("{name}: {err}")),
        }
    }
    // The services of ours that connect to NATS, with the clap command of the
    // (first) command line doing so.
    let nats_clients: Vec<(&String, &Service, clap::Command)> = services
        .iter()
        .filter_map(|(name, service)| {
            let run = service
                .runs
                .iter()
                .find(|run| Binary::of(run).is_some_and(Binary::uses_nats))?;
            let clap = Binary::of(run)?.clap(run).ok()?;
            Some((name, service, clap))
        })
        .collect();
    let stream_bytes: Vec<u64> = nats_clients
        .iter()
        .filter_map(|(_, service, clap)| setting(service, clap, "TELEMETRY_STREAM_MAX_BYTES"))
        .filter_map(|bytes| bytes.parse().ok())
        .collect();
    for (name, node) in &nodes {
        let nats = &services[name];
        let config = node.config.as_ref().map(|(source, _)| source.as_str());
        match &node.store_dir {
            Some(dir) if nats.mounts.contains(&dir.trim_end_matches('/').to_owned()) => {}
            dir => problems.push(format!(
                "{name}: the JetStream store (-sd or store_dir: {dir:?}) must be a mounted volume"
            )),
        }
        if !node.jetstream {
            problems.push(format!(
                "{name}: nats-server needs -js (JetStream), or a jetstream block in its config"
            ));
        }
        match (&nats.health_url, node.http_port) {
            (Some(url), Some(port)) if url.port() == Some(port) => {
                if url.path() != "/healthz"
                    || url.query().is_some_and(|q| q.contains("js-enabled-only"))
                {
                    problems.push(format!(
                        "{name}: health check {url} must call /healthz without js-enabled-only (which answers 200 on a node without quorum)"
                    ));
                }
            }
            (url, port) => problems.push(format!(
                "{name}: health check {url:?} must call the monitoring port (-m or http: {port:?})"
            )),
        }
        if let (Some(limit), Some(cap)) = (node.max_file_store, stream_bytes.iter().max()) {
            if limit < *cap {
                problems.push(format!(
                    "{name}: max_file_store in {} is {limit} bytes, less than TELEMETRY_STREAM_MAX_BYTES {cap}: every replica reserves the whole cap, and the broker refuses a stream it cannot reserve",
                    config.unwrap_or("its config")
                ));
            }
        }
    }
    if nodes.len() > 1 || nodes.values().any(|n| n.cluster.is_some()) {
        cluster_problems(&nodes, &mut problems);
    }
    for (name, service) in services {
        let ours: Vec<&Vec<String>> = service
            .runs
            .iter()
            .filter(|run| Binary::of(run).is_some())
            .collect();
        if ours.is_empty() {
            continue;
        }
        for run in &ours {
            check_binary(name, run, service, &mut problems);
        }
        let env = |key: &str| service.environment.get(key);
        let mut listed = BTreeSet::new();
        for url in env("NATS_URL").into_iter().flat_map(|v| v.split(',')) {
            let url = Url::parse(url.trim()).map_err(|e| e.to_string());
            let (host, port) = match &url {
                Ok(u) => (u.host_str().unwrap_or(""), u.port().unwrap_or(0)),
                Err(_) => ("", 0),
            };
            let Some(node) = nodes.get(host) else {
                problems.push(format!("{name}: NATS_URL host {host:?} is no nats service"));
                continue;
            };
            listed.insert(host.to_owned());
            if port != node.client_port() {
                problems.push(format!(
                    "{name}: NATS_URL port {port} but {host} listens on {}",
                    node.client_port()
                ));
            }
            needs(&mut problems, name, "NATS_URL", host);
        }
        if ours
            .iter()
            .any(|run| Binary::of(run).is_some_and(Binary::uses_nats))
        {
            let missing: Vec<&String> = nodes.keys().filter(|n| !listed.contains(*n)).collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "{name}: NATS_URL must list every NATS node ({}), so a client moves to another when its node goes; it leaves out {}",
                    nodes.keys().cloned().collect::<Vec<_>>().join(", "),
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
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
            let target = services.get(host).and_then(|t| {
                let run = t
                    .runs
                    .iter()
                    .find(|run| Binary::of(run) == Some(Binary::Renderer))?;
                listen_addr(run, t)
            });
            match target {
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
        if let Some(dir) = env("IMAGE_STORE_DIR") {
            if !service
                .mounts
                .contains(&dir.trim_end_matches('/').to_owned())
            {
                problems.push(format!(
                    "{name}: IMAGE_STORE_DIR {dir} must be a mounted volume (images outlive the container)"
                ));
            }
        }
        for run in &ours {
            let key = Binary::of(run).and_then(|b| b.addr_env(run));
            let (Some(key), Some(addr)) = (key, listen_addr(run, service)) else {
                continue;
            };
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
    stream_problems(&nodes, &nats_clients, &mut problems);
    fleet_problems(services, &mut problems);
    // A service running two command lines of one binary (`stream create && stream
    // update`) finds the same problem twice: say it once.
    let mut seen = BTreeSet::new();
    problems.retain(|problem| seen.insert(problem.clone()));
    problems
}

/// A cluster: each node a cluster block with a listen port, one cluster name, unique
/// server names, and routes to exactly the other nodes' cluster ports.
fn cluster_problems(nodes: &BTreeMap<String, NatsNode>, problems: &mut Vec<String>) {
    let size = nodes.len();
    let mut names = BTreeMap::<&str, Vec<&str>>::new();
    let mut server_names = BTreeMap::<&str, Vec<&str>>::new();
    for (name, node) in nodes {
        match &node.server_name {
            Some(server) => server_names.entry(server).or_default().push(name),
            None => problems.push(format!(
                "{name}: a node of a {size}-node cluster needs its own server_name"
            )),
        }
        match &node.cluster {
            Some(ClusterConf {
                name: cluster_name,
                port: Some(_),
                ..
            }) => names
                .entry(cluster_name.as_deref().unwrap_or("(none)"))
                .or_default()
                .push(name),
            _ => problems.push(format!(
                "{name}: a node of a {size}-node cluster needs a cluster block with a listen port"
            )),
        }
    }
    if names.len() > 1 {
        problems.push(format!("the nodes disagree on the cluster name: {names:?}"));
    }
    for (server, holders) in server_names {
        if holders.len() > 1 {
            problems.push(format!(
                "{}: server_name {server} must be unique (JetStream names its peers by it)",
                holders.join(", ")
            ));
        }
    }
    for (name, node) in nodes {
        let Some(cluster) = &node.cluster else {
            continue;
        };
        let expected: BTreeSet<String> = nodes
            .iter()
            .filter(|(other, _)| *other != name)
            .filter_map(|(other, n)| Some(format!("{other}:{}", n.cluster.as_ref()?.port?)))
            .collect();
        let actual: BTreeSet<String> = cluster
            .routes
            .iter()
            .map(|route| match Url::parse(route) {
                Ok(url) => format!(
                    "{}:{}",
                    url.host_str().unwrap_or_default(),
                    url.port().unwrap_or(0)
                ),
                Err(_) => route.clone(),
            })
            .collect();
        if actual != expected {
            problems.push(format!(
                "{name}: routes {actual:?} must name the other nodes' cluster ports {expected:?}"
            ));
        }
    }
}

/// The stream's settings: the same on every service, and its replicas what the nodes
/// can hold (3 on a cluster of three or more, at most one per node).
fn stream_problems(
    nodes: &BTreeMap<String, NatsNode>,
    clients: &[(&String, &Service, clap::Command)],
    problems: &mut Vec<String>,
) {
    for key in STREAM_SETTINGS {
        let values: BTreeMap<String, Vec<&str>> =
            clients
                .iter()
                .fold(BTreeMap::new(), |mut acc, (name, service, clap)| {
                    let value = setting(service, clap, key).unwrap_or_default();
                    acc.entry(value)
                        .or_insert_with(Vec::new)
                        .push(name.as_str());
                    acc
                });
        if values.len() > 1 {
            problems.push(format!(
                "{key} differs between services ({values:?}): the one that creates the stream decides, the others warn at start-up"
            ));
        }
    }
    if nodes.is_empty() {
        return;
    }
    let size = nodes.len();
    for (name, service, clap) in clients {
        let replicas = setting(service, clap, "TELEMETRY_STREAM_REPLICAS").unwrap_or_default();
        let count: usize = replicas.parse().unwrap_or(0);
        if size >= CLUSTER_REPLICAS && count < CLUSTER_REPLICAS {
            problems.push(format!(
                "{name}: TELEMETRY_STREAM_REPLICAS is {replicas} on a {size}-node cluster: set it to {CLUSTER_REPLICAS} (any two copies keep the stream writable)"
            ));
        } else if count > size {
            problems.push(format!(
                "{name}: TELEMETRY_STREAM_REPLICAS is {replicas} but there are {size} NATS node(s)"
            ));
        }
    }
}

/// Collectors and the one-shot stream set-up: collectors share one consumer and one
/// database, wait for the set-up to complete, which runs once; and no two services
/// publish the same host port.
fn fleet_problems(services: &BTreeMap<String, Service>, problems: &mut Vec<String>) {
    let serving: Vec<(&String, &Service, clap::Command)> = services
        .iter()
        .filter_map(|(name, service)| {
            let run = service.runs.iter().find(|run| is_serve(run))?;
            Some((name, service, Binary::Collector.clap(run).ok()?))
        })
        .collect();
    for key in ["COLLECTOR_CONSUMER", "DATABASE_URL", "TELEMETRY_STREAM"] {
        let values: BTreeSet<String> = serving
            .iter()
            .filter_map(|(_, service, clap)| setting(service, clap, key))
            .collect();
        if values.len() > 1 {
            let names: Vec<&str> = serving.iter().map(|(n, ..)| n.as_str()).collect();
            problems.push(format!(
                "{}: collectors of one fleet share {key} (one durable consumer hands each message to one of them, into one database); found {values:?}",
                names.join(", ")
            ));
        }
    }
    let setups: Vec<&String> = services
        .iter()
        .filter(|(_, s)| s.runs.iter().any(|run| is_stream(run)))
        .map(|(n, _)| n)
        .collect();
    for (name, service, _) in &serving {
        for setup in &setups {
            if service.depends_on.get(setup.as_str()).map(String::as_str)
                != Some("service_completed_successfully")
            {
                problems.push(format!(
                    "{name}: depends_on.{setup} needs condition: service_completed_successfully (the stream is set up before ingest starts)"
                ));
            }
        }
    }
    for (name, service) in services {
        for (target, condition) in &service.depends_on {
            if condition != "service_completed_successfully" {
                continue;
            }
            let restart = services.get(target).and_then(|t| t.restart.as_deref());
            if !matches!(restart, None | Some("no" | "on-failure")) {
                problems.push(format!(
                    "{target}: {name} waits for it to complete, so it runs once: restart must be \"no\" (not {restart:?})"
                ));
            }
        }
    }
    let mut published = BTreeMap::<u16, Vec<&str>>::new();
    for (name, service) in services {
        for port in &service.host_ports {
            published.entry(*port).or_default().push(name);
        }
    }
    for (port, names) in published {
        if names.len() > 1 {
            problems.push(format!(
                "host port {port} is published by {}",
                names.join(" and ")
            ));
        }
    }
}

/// The listen address a command line of ours gets: the service's environment, else
/// the flag's default.
pub fn listen_addr(run: &[String], service: &Service) -> Option<SocketAddr> {
    let binary = Binary::of(run)?;
    let key = binary.addr_env(run)?;
    let clap = binary.clap(run).ok()?;
    setting(service, &clap, key)?.parse().ok()
}

/// Every `nats` image must be on `line` (`2.9`), the nats-server line the test suite
/// runs against, so what the compose files run is what the tests exercised.
pub fn image_problems(services: &BTreeMap<String, Service>, line: &str) -> Vec<String> {
    services
        .iter()
        .filter_map(|(name, service)| {
            let tag = service.image.strip_prefix("nats:")?;
            let on_line = tag
                .strip_prefix(line)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'));
            (!on_line).then(|| {
                format!(
                    "{name}: image {} is not on nats-server {line}, the line the test suite runs against (scripts/services.sh): change them together",
                    service.image
                )
            })
        })
        .collect()
}
