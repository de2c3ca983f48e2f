//! The compose file reduced to what the checks read: services with their command,
//! environment (`${VAR:-default}` interpolated), published ports, health-check URL and
//! `depends_on` conditions.

use std::collections::BTreeMap;

use reqwest::Url;
use serde_norway::Value;

/// The compose file, from the workspace root.
pub const COMPOSE_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docker-compose.yml");

/// One service, reduced to what the checks read, `${VAR:-default}` interpolated.
#[derive(Debug, Default)]
pub struct Service {
    pub image: String,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    /// Container side of each published port.
    pub container_ports: Vec<u16>,
    /// Container side of each volume mount.
    pub mounts: Vec<String>,
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

pub fn parse_service(value: &Value) -> Result<Service, String> {
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
    if let Some(Value::Sequence(volumes)) = value.get("volumes") {
        for volume in volumes {
            let target = match volume {
                Value::Mapping(_) => scalar(&volume["target"]).unwrap_or_default(),
                // source:target[:mode]
                other => {
                    let short = interpolate(&scalar(other).unwrap_or_default())?;
                    short.split(':').nth(1).unwrap_or_default().to_owned()
                }
            };
            service.mounts.push(target.trim_end_matches('/').to_owned());
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

pub fn load() -> Value {
    let text = std::fs::read_to_string(COMPOSE_PATH)
        .unwrap_or_else(|err| panic!("read {COMPOSE_PATH}: {err}"));
    serde_norway::from_str(&text).unwrap_or_else(|err| panic!("{COMPOSE_PATH}: {err}"))
}
