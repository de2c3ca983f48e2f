//! `renderer`: parse flags, start tracing, build, serve until Ctrl-C or SIGTERM.

use renderer::{Application, Cli};
use service_kit::cli::{init_logs, LogTo};

#[tokio::main]
async fn main() {
    let cli: Cli = service_kit::cli::parse_or_exit("renderer");
    init_logs(cli.log_format, LogTo::Stdout);
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("renderer: {err}");
            std::process::exit(2);
        }
    };
    if let Err(err) = serve(settings).await {
        eprintln!("renderer: {}", service_kit::error_line(err.as_ref()));
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
