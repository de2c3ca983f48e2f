//! How a wrong setting is reported, and how a binary prints an error.

/// A configuration value that cannot work, named so start-up can fail with one line.
/// The same type for the SDK, the renderer and the collector: each binary's `main`
/// prefixes the line with its own name, and the setting names say which part it is
/// (`TELEMETRY_*` the SDK, `NATS_*` the connection, `HTTP_*` the edge).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {setting}: {reason}")]
pub struct ConfigError {
    /// The setting's environment variable (or field) name.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// `setting` is wrong because of `reason`.
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting,
            reason: reason.into(),
        }
    }
}

/// An error and its causes on one line, each cause once, for a binary's `main` (the
/// renderer's and the collector's). Driver errors (sqlx, rustls, io) often repeat
/// their source in their own message, so `{:#}` would print the same cause several
/// times over.
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(err);
    while let Some(err) = cause {
        let text = err.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = err.source();
    }
    line
}
