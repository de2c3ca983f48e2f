//! `renderer`: parse flags, start tracing, build, serve until Ctrl-C or SIGTERM.

use clap::Parser;
use renderer::{Application, Cli};
use telemetry::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// The renderer's flags plus how it logs (kept here: logging is the binary's business).
#[derive(Debug, clap::Parser)]
#[command(name = "renderer", version, about = "See It Now render service")]
struct Args {
    /// Log lines as human-readable text or as one JSON object per line.
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t)]
    log_format: LogFormat,
    /// Everything else.
    #[command(flatten)]
    cli: Cli,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let logs = tracing_subscriber::fmt().with_env_filter(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    );
    match args.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let settings = match args.cli.settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("renderer: {err}");
            std::process::exit(2);
        }
    };
    let app = Application::build(settings).await?;
    let report = app.run_until_stopped().await?;
    if report.left > 0 {
        tracing::warn!(
            left = report.left,
            "telemetry events left unsent at shutdown"
        );
    }
    Ok(())
}
