//! `telemetry-collector serve | ingest | migrate | prune | replay | dead-letters |
//! stream | rollups`:
//! parse, init tracing, build, run.

use anyhow::Context as _;
use service_kit::cli::{init_logs, LogTo};
use service_kit::ExposeSecret as _;
use telemetry_collector::config::{Cli, Command};
use telemetry_collector::{
    dead_letters, replay, retention, rollups_admin, store, stream_admin, Application,
};

#[tokio::main]
async fn main() {
    let cli: Cli = service_kit::cli::parse_or_exit("telemetry-collector");
    init_logs(cli.log_format, LogTo::Stderr);
    if let Err(err) = run(cli).await {
        eprintln!(
            "telemetry-collector: {}",
            service_kit::error_line(err.as_ref())
        );
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = match cli.command {
        Command::Serve(args) => args.settings()?,
        Command::Ingest(args) => args.settings(),
        Command::Migrate(args) => {
            let settings = args.settings();
            let store = store::connect(settings.database_url.expose_secret(), &settings.store)
                .await
                .context("DATABASE_URL")?;
            store.migrate().await.context("DATABASE_URL")?;
            store.close().await;
            tracing::info!("migrations applied");
            return Ok(());
        }
        Command::Prune(args) => {
            retention::run_prune(&args).await.context("DATABASE_URL")?;
            return Ok(());
        }
        Command::Replay(args) => {
            replay::run(&args).await?;
            return Ok(());
        }
        Command::DeadLetters(args) => {
            dead_letters::run(&args).await?;
            return Ok(());
        }
        Command::Stream(args) => {
            let mut report = String::new();
            let result = stream_admin::run(&args, &mut report).await;
            print!("{report}");
            result?;
            return Ok(());
        }
        Command::Rollups(args) => {
            let mut report = String::new();
            let agree = rollups_admin::run(&args, &mut report)
                .await
                .context("DATABASE_URL");
            print!("{report}");
            if !agree? {
                std::process::exit(1);
            }
            return Ok(());
        }
    };
    let app = Application::build(settings).await?;
    if app.port() != 0 {
        tracing::info!(port = app.port(), "listening");
    }
    let handle = app.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the batch in flight");
        handle.shutdown();
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
