//! A compose file reduced to what the checks read: services with their command,
//! environment (`${VAR:-default}` interpolated), published ports, mounts, health-check
//! URL, restart policy and `depends_on` conditions; and the files it mounts from the
//! repository (the NATS node configs), read through [`Files`] so a test can change them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde_norway::Value;

/// The workspace root, where the compose files are and their relative paths start.
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// The single-node compose file.
pub const MAIN: &str = "docker-compose.yml";
/// The three-node cluster's compose file.
pub const CLUSTER: &str = "docker-compose.cluster.yml";

/// One service, reduced to what the checks read, `${VAR:-default}` interpolated.
#[derive(Debug, Default)]
pub struct Service {
    pub image: String,
    pub command: Vec<String>,
    /// The command lines the service runs: its `command`, or each `&&`-joined part of
    /// a `sh -c "a && b"` command.
    pub runs: Vec<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    /// Container side of each published port.
    pub container_ports: Vec<u16>,
    /// Host side of each published port.
    pub host_ports: Vec<u16>,
    /// Container side of each volume mount.
    pub mounts: Vec<String>,
    /// Bind mounts of files or directories (a source starting with `.` or `/`):
    /// (source, container path).
    pub binds: Vec<(String, String)>,
    /// `restart:` (compose's default is `no`).
    pub restart: Option<String>,
    /// The health check's URL, if it calls one.
    pub health_url: Option<Url>,
    pub has_healthcheck: bool,
    /// Service name to `condition`.
    pub depends_on: BTreeMap<String, String>,
}

/// Compose's `${NAME:-default}` / `${NAME-default}`: the default (the checks judge the
/// file as shipped, not the caller's environment). `${NAME}` without a default is an
/// error: the file would not work unset.
pub fn interpolate(raw: &str) -> Result<String, String> {
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

pub fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn strings(value: Option<&Value>) -> Result<Vec<String>, String> {
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

/// `sh -c "a && b"` as the command lines `a` and `b`; any other command as itself.
/// Only `&&` between plain words is understood: quotes, pipes, `;` or `$` in the
/// script are refused, so a check never reads a command line other than the one run.
pub fn runs(command: &[String]) -> Result<Vec<Vec<String>>, String> {
    let shell = matches!(
        command.first().map(String::as_str),
        Some("sh" | "/bin/sh" | "bash" | "/bin/bash")
    );
    if !shell || command.get(1).map(String::as_str) != Some("-c") {
        return Ok(vec![command.to_vec()]);
    }
    let script = command.get(2).ok_or("`sh -c` without a script")?.as_str();
    if let Some(c) = script.chars().find(|c| "'\"`$;|<>()\\".contains(*c)) {
        return Err(format!(
            "command script {script:?}: {c:?} is more than the checks read (plain words joined by &&)"
        ));
    }
    Ok(script
        .split("&&")
        .map(|part| part.split_whitespace().map(str::to_owned).collect())
        .collect())
}

pub fn parse_service(value: &Value) -> Result<Service, String> {
    let command = strings(value.get("command"))?;
    let mut service = Service {
        image: value["image"].as_str().unwrap_or_default().to_owned(),
        runs: runs(&command)?,
        command,
        restart: value.get("restart").and_then(scalar),
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
            // [ip:]host:container, or the long form.
            let (published, target) = match port {
                Value::Mapping(_) => (
                    scalar(&port["published"]),
                    scalar(&port["target"]).unwrap_or_default(),
                ),
                other => {
                    let short = interpolate(&scalar(other).unwrap_or_default())?;
                    let mut parts = short.rsplit(':');
                    let target = parts.next().unwrap_or_default().to_owned();
                    (parts.next().map(str::to_owned), target)
                }
            };
            let target = target.trim_end_matches("/tcp");
            service.container_ports.push(
                target
                    .parse()
                    .map_err(|_| format!("port {port:?}: no container port"))?,
            );
            if let Some(published) = published {
                service.host_ports.push(
                    published
                        .parse()
                        .map_err(|_| format!("port {port:?}: host port {published:?}"))?,
                );
            }
        }
    }
    if let Some(Value::Sequence(volumes)) = value.get("volumes") {
        for volume in volumes {
            let (source, target) = match volume {
                Value::Mapping(_) => (
                    scalar(&volume["source"]).unwrap_or_default(),
                    scalar(&volume["target"]).unwrap_or_default(),
                ),
                // source:target[:mode]
                other => {
                    let short = interpolate(&scalar(other).unwrap_or_default())?;
                    let mut parts = short.split(':');
                    let source = parts.next().unwrap_or_default().to_owned();
                    (source, parts.next().unwrap_or_default().to_owned())
                }
            };
            let target = target.trim_end_matches('/').to_owned();
            if source.starts_with('.') || source.starts_with('/') {
                service.binds.push((source, target.clone()));
            }
            service.mounts.push(target);
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

pub fn parse_compose(mut doc: Value) -> Result<BTreeMap<String, Service>, String> {
    // Merging again changes nothing once [`load`] has merged.
    merge(&mut doc)?;
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

/// A compose file (`MAIN` or `CLUSTER`) with its `<<` merge keys applied, so a test
/// can change one service's inherited settings without touching the others.
pub fn load(file: &str) -> Value {
    let path = Path::new(ROOT).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let mut doc: Value =
        serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    merge(&mut doc).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    doc
}

/// Applies `<<` merge keys until none is left: a merged mapping that itself merges
/// another (`collector-1: <<: *collector`, where `x-collector` has `<<: *app`) brings
/// its own `<<` along, which one pass of [`Value::apply_merge`] leaves in place.
pub fn merge(doc: &mut Value) -> Result<(), String> {
    for _ in 0..8 {
        let before = doc.clone();
        doc.apply_merge().map_err(|err| err.to_string())?;
        if *doc == before {
            return Ok(());
        }
    }
    Err("`<<` merges nested more than 8 deep".into())
}

/// The files a compose file mounts, read from the workspace root unless a test has
/// replaced (or removed) one.
#[derive(Debug, Default)]
pub struct Files {
    /// Path as the compose file writes it (`./deploy/...`) to the text a test wants
    /// instead, `None` for a file that should be missing.
    pub replaced: BTreeMap<String, Option<String>>,
}

impl Files {
    /// Where a compose-relative path is on this machine.
    pub fn path(source: &str) -> PathBuf {
        Path::new(ROOT).join(source)
    }

    /// The text of the file the compose file names `source`.
    pub fn read(&self, source: &str) -> Result<String, String> {
        match self.replaced.get(source) {
            Some(Some(text)) => Ok(text.clone()),
            Some(None) => Err(format!("{source} does not exist")),
            None => std::fs::read_to_string(Self::path(source))
                .map_err(|err| format!("{source} cannot be read: {err}")),
        }
    }

    /// `source` with `from` replaced by `to` (which must occur in it).
    pub fn replace(&mut self, source: &str, from: &str, to: &str) {
        let text = self.read(source).unwrap();
        assert!(text.contains(from), "{source} has no {from:?}");
        self.replaced
            .insert(source.to_owned(), Some(text.replacen(from, to, 1)));
    }
}
