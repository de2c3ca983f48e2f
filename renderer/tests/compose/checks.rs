//! The checks: each service's environment against its binary's clap flags and start-up
//! validation, and the hosts and ports between services.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use clap::{CommandFactory, Parser};
use reqwest::Url;

use super::model::Service;
use crate::demo_args::DemoArgs;

/// Read by `tracing_subscriber::EnvFilter` in the collector's and renderer's `main`,
/// not by clap: the one variable outside the flag definitions.
const LOG_ENV: &str = "RUST_LOG";
/// nats-server's client port when `-p` is not given.
const NATS_DEFAULT_PORT: u16 = 4222;
/// Postgres' port when the URL names none.
const POSTGRES_DEFAULT_PORT: u16 = 5432;

/// Which of our binaries a service runs (the first word of its `command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
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

/// `flag value` (the value after `-p` etc. in a third-party command line).
pub fn flag_value(command: &[String], flags: &[&str]) -> Option<String> {
    command
        .windows(2)
        .find(|pair| flags.contains(&pair[0].as_str()))
        .map(|pair| pair[1].clone())
}

/// Turns the service's environment into command-line flags of its binary (via each
/// flag's `env` name) and runs the binary's own parse and start-up checks on them.
pub fn check_binary(name: &str, binary: Binary, service: &Service, problems: &mut Vec<String>) {
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
pub fn problems(services: &BTreeMap<String, Service>) -> Vec<String> {
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
        match flag_value(&nats.command, &["-sd", "--store_dir"]) {
            Some(dir) if nats.mounts.contains(&dir) => {}
            dir => problems.push(format!(
                "{name}: the JetStream store (-sd {dir:?}) must be a mounted volume"
            )),
        }
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
pub fn listen_addr(binary: Binary, service: &Service) -> Option<SocketAddr> {
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
