//! `renderer`: parse flags, start tracing, build, serve until Ctrl-C or SIGTERM.

use std::io::IsTerminal as _;

use clap::Parser;
use renderer::{Application, Cli};
use telemetry::config::{log_colour, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let colour = log_colour(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_ansi(colour);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("renderer: {err}");
            std::process::exit(2);
        }
    };
    if let Err(err) = serve(settings).await {
        eprintln!("renderer: {}", telemetry::config::error_line(err.as_ref()));
        std::process::exit(1);
    }
}

/// Builds the service and serves until Ctrl-C or SIGTERM.
async fn serve(settings: renderer::config::Settings) -> anyhow::Result<()> {
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
