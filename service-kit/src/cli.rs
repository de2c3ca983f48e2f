//! What the renderer's and the collector's command lines share (feature `cli`): the NATS
//! flags, `--log-format`, setting up the log from them, and parsing with a wrong value
//! reported on one line, so both binaries accept the same names and fail and log the
//! same way.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use secrecy::SecretString;
use telemetry_proto::stream::{DEFAULT_MAX_BYTES, DEFAULT_STREAM};
use telemetry_proto::subjects::DEFAULT_PREFIX;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::nats::{NatsConfig, DEFAULT_NATS_URL};

/// NATS connection flags, flattened into both binaries' command lines.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long = "nats-url", env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// NATS credentials file (.creds).
    #[arg(long = "nats-creds", env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with --nats-password).
    #[arg(long = "nats-user", env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long = "nats-password", env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<SecretString>,
    /// NATS token.
    #[arg(long = "nats-token", env = "NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<SecretString>,
    /// PEM CA file for a TLS connection to NATS (requires TLS).
    #[arg(long = "nats-tls-ca", env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify clients (with --nats-tls-key).
    #[arg(long = "nats-tls-cert", env = "NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long = "nats-tls-key", env = "NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,
    /// Subject prefix of the telemetry subjects.
    #[arg(long = "subject-prefix", env = "TELEMETRY_SUBJECT_PREFIX", default_value = DEFAULT_PREFIX)]
    pub subject_prefix: String,
    /// JetStream stream name.
    #[arg(long = "stream", env = "TELEMETRY_STREAM", default_value = DEFAULT_STREAM)]
    pub stream: String,
    /// Disk cap of the stream, in bytes, used when this process creates it (an
    /// existing stream keeps its own limits).
    #[arg(long = "stream-max-bytes", env = "TELEMETRY_STREAM_MAX_BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    pub stream_max_bytes: i64,
    /// Copies of the stream the broker keeps, used when this process creates it and by
    /// `telemetry-collector stream update`: 1 on one server, 3 on a three-node cluster
    /// (any two keep it writable). An existing stream is never changed at start-up.
    #[arg(long = "stream-replicas", env = "TELEMETRY_STREAM_REPLICAS", default_value_t = 1,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=telemetry_proto::stream::MAX_REPLICAS as u64))]
    pub stream_replicas: usize,
}

impl NatsArgs {
    /// The connection settings, named `connection_name` on the server.
    pub fn nats_config(&self, connection_name: &str) -> NatsConfig {
        NatsConfig {
            url: self.nats_url.clone(),
            creds_file: self.nats_creds.clone(),
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            tls_ca_file: self.nats_tls_ca.clone(),
            tls_cert_file: self.nats_tls_cert.clone(),
            tls_key_file: self.nats_tls_key.clone(),
            connection_name: connection_name.to_owned(),
        }
    }
}

/// [`clap::Parser::parse`], except that a value clap refuses (out of its flag's range,
/// not a number, not one of the choices) prints one line, `{binary}: invalid setting
/// ENV_VAR: ...` as a wrong [`crate::ConfigError`] does, and exits 2. Ranges live in
/// the flags' `value_parser`s; this keeps their errors as short as the other settings'
/// and names the environment variable most deployments set. `--help`, `--version` and
/// usage errors are clap's own.
pub fn parse_or_exit<P: clap::Parser>(binary: &str) -> P {
    let args: Vec<OsString> = std::env::args_os().collect();
    match P::try_parse_from(&args) {
        Ok(parsed) => parsed,
        Err(err) => match value_error_line(&err, &P::command(), &args) {
            Some(line) => {
                eprintln!("{binary}: {line}");
                std::process::exit(2);
            }
            None => err.exit(),
        },
    }
}

/// The one line for a refused value, `invalid setting ENV_VAR: invalid value '0' for
/// '--flag <VALUE>': 0 is not in 1..=8`, or `None` for other errors. `args` are the
/// ones parsed, to tell which subcommand's flag it was (the collector's `prune` and
/// `serve` both have a `--batch-size`, with different variables).
pub fn value_error_line(
    err: &clap::Error,
    command: &clap::Command,
    args: &[OsString],
) -> Option<String> {
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let rendered = err.to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first);
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return Some(message.to_owned());
    };
    let long = arg
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_start_matches('-');
    Some(match env_of(command, args, long) {
        Some(env) => format!("invalid setting {env}: {message}"),
        None => message.to_owned(),
    })
}

/// The line [`parse_or_exit`] would print for `args` (the program name first), or
/// `None` when they parse or fail otherwise: how the services' config tests check that
/// a range is refused and said on one line.
pub fn refused_value<P: clap::Parser>(args: &[&str]) -> Option<String> {
    let args: Vec<OsString> = args.iter().map(OsString::from).collect();
    let err = P::try_parse_from(&args).err()?;
    value_error_line(&err, &P::command(), &args)
}

/// The environment variable of flag `--{long}` in the subcommand `args` chose (or, for
/// a global flag, in one of its parents).
fn env_of(command: &clap::Command, args: &[OsString], long: &str) -> Option<String> {
    let mut chain = vec![command];
    for arg in args.iter().skip(1) {
        let current = chain[chain.len() - 1];
        let next = arg
            .to_str()
            .and_then(|name| current.get_subcommands().find(|sub| sub.get_name() == name));
        if let Some(sub) = next {
            chain.push(sub);
        }
    }
    chain.iter().rev().find_map(|command| {
        command
            .get_arguments()
            .find(|arg| arg.get_long() == Some(long))
            .and_then(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
    })
}

/// How a binary writes its log lines (`--log-format`, `LOG_FORMAT`), the same for the
/// renderer and the collector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Which stream a binary logs to: the renderer to stdout, the collector to stderr
/// (its `prune`, `replay` and `dead-letters` print their results on stdout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogTo {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Installs the global log subscriber: `RUST_LOG` filtering (`info` when unset or
/// unreadable), lines in `format` on `to`, coloured only where [`log_colour`] says.
pub fn init_logs(format: LogFormat, to: LogTo) {
    let (is_terminal, writer) = match to {
        LogTo::Stdout => (
            std::io::stdout().is_terminal(),
            BoxMakeWriter::new(std::io::stdout),
        ),
        LogTo::Stderr => (
            std::io::stderr().is_terminal(),
            BoxMakeWriter::new(std::io::stderr),
        ),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(log_colour(is_terminal, std::env::var_os("NO_COLOR")));
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Whether a binary's text log lines carry ANSI colour codes: only when the stream it
/// logs to is a terminal (`is_terminal`, from [`std::io::IsTerminal`]), and never when
/// `NO_COLOR` (`no_color`, from `std::env::var_os("NO_COLOR")`) is set to a non-empty
/// value (<https://no-color.org>). Escape sequences in a log file, a pipe or a journal
/// are noise that `grep` trips over. The same for the renderer and the collector.
pub fn log_colour(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsString;
        // A terminal, NO_COLOR unset or empty (an empty value does not count).
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsString::new())));
        // NO_COLOR with any non-empty value, even "0" or "false".
        for value in ["1", "0", "false", "yes"] {
            assert!(!log_colour(true, Some(value.into())), "NO_COLOR={value}");
        }
        // A file or a pipe: never, whatever NO_COLOR says.
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsString::new())));
        assert!(!log_colour(false, Some("1".into())));
    }

    #[test]
    fn a_refused_value_is_one_line_naming_the_variable_of_the_subcommand_s_flag() {
        #[derive(Debug, clap::Parser)]
        enum Cli {
            Serve {
                #[arg(long, env = "SERVE_BATCH_SIZE", value_parser = clap::value_parser!(u64).range(1..=10))]
                batch_size: u64,
            },
            Prune {
                #[arg(long, env = "PRUNE_BATCH_SIZE", value_parser = clap::value_parser!(u64).range(1..=5))]
                batch_size: u64,
            },
        }
        for (sub, env, range) in [
            ("serve", "SERVE_BATCH_SIZE", "1..=10"),
            ("prune", "PRUNE_BATCH_SIZE", "1..=5"),
        ] {
            let line = refused_value::<Cli>(&["x", sub, "--batch-size", "0"]).unwrap();
            assert_eq!(
                line,
                format!(
                    "invalid setting {env}: invalid value '0' for '--batch-size <BATCH_SIZE>': \
                     0 is not in {range}"
                )
            );
        }
        // Parsed, or not a value error (clap's own message then): no line.
        assert_eq!(
            refused_value::<Cli>(&["x", "serve", "--batch-size", "1"]),
            None
        );
        assert_eq!(refused_value::<Cli>(&["x", "serve", "--nope"]), None);
    }

    #[test]
    fn nats_flags_keep_the_password_and_token_out_of_debug() {
        use clap::Parser as _;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            nats: NatsArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--nats-user",
            "someone",
            "--nats-password",
            "hunter2-password",
        ])
        .unwrap();
        let config = cli.nats.nats_config("x");
        assert_eq!(config.user.as_deref(), Some("someone"));
        use secrecy::ExposeSecret as _;
        assert_eq!(
            config.password.as_ref().map(|p| p.expose_secret()),
            Some("hunter2-password")
        );
        for printed in [format!("{cli:?}"), format!("{config:?}")] {
            assert!(!printed.contains("hunter2-password"), "{printed}");
        }
    }
}
