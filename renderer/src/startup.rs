//! [`Application`]: binds the listener, wires the parts, serves until stopped, and on
//! the way out waits for (or interrupts) the renders in progress, then flushes
//! telemetry.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use service_kit::ExposeSecret as _;
use telemetry::{ShutdownReport, Telemetry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::http::{router, AppState};
use crate::metrics::Metrics;
use crate::providers::{self, ProviderError};
use crate::render::Renderer;
use crate::store::{ImageStore, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The telemetry SDK refused its settings (the same [`crate::config::ConfigError`],
    /// said to come from the SDK).
    #[error("telemetry: {0}")]
    Telemetry(crate::config::ConfigError),
    /// The image store directory cannot be created.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The provider cannot be built.
    #[error("provider: {0}")]
    Provider(#[from] ProviderError),
    /// The telemetry thread or its runtime cannot be started.
    #[error("cannot start the telemetry thread: {0}")]
    Runtime(std::io::Error),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A bound, wired renderer, ready to serve.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    settings: Settings,
    /// Where the SDK's publisher runs; stopped after the final flush.
    telemetry_thread: Option<TelemetryThread>,
}

/// The SDK's publisher on a thread and runtime of its own. Encoding and publishing
/// thousands of events a second is real CPU work; on the server's runtime it would
/// take turns with request handlers on the same worker threads and add to their
/// latency. On its own thread it is scheduled by the OS beside them instead.
struct TelemetryThread {
    /// Dropping or sending ends the thread's runtime.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TelemetryThread {
    fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the SDK with its publisher on a [`TelemetryThread`].
fn start_telemetry(
    config: telemetry::TelemetryConfig,
) -> Result<(Telemetry, TelemetryThread), StartupError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartupError::Runtime)?;
    let telemetry = {
        let _context = runtime.enter();
        Telemetry::start(config).map_err(StartupError::Telemetry)?
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("telemetry".into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = stopped.await;
            });
        })
        .map_err(StartupError::Runtime)?;
    Ok((
        telemetry,
        TelemetryThread {
            stop: Some(stop),
            thread: Some(thread),
        },
    ))
}

impl Application {
    /// Builds from settings, with the SDK when telemetry is on. Must run inside a Tokio
    /// runtime (the SDK's publisher is a task).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        settings.validate()?;
        let mut telemetry_thread = None;
        let telemetry = match &settings.telemetry {
            Some(config) => {
                let (telemetry, thread) = start_telemetry(config.clone())?;
                telemetry_thread = Some(thread);
                telemetry
            }
            None => Telemetry::disabled(),
        };
        let store = ImageStore::open(&settings.image_store_dir)?;
        let provider = providers::from_settings(&settings.provider)?;
        let metrics = Arc::new(Metrics::default());
        let renderer = Arc::new(Renderer::new(
            provider,
            store.clone(),
            telemetry.clone(),
            settings.limits,
            metrics.clone(),
        ));
        let listener =
            TcpListener::bind(settings.addr)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.addr,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.addr,
            source,
        })?;
        let state = AppState {
            renderer,
            store,
            telemetry,
            metrics,
            limits: settings.limits,
            shopify_api_secret: settings
                .shopify_api_secret
                .as_ref()
                .map(|secret| Arc::from(secret.expose_secret())),
        };
        Ok(Self {
            listener,
            addr,
            state,
            settings,
            telemetry_thread,
        })
    }

    /// The bound address (the real port when built with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The SDK handle (disabled when telemetry is off).
    pub fn telemetry(&self) -> Telemetry {
        self.state.telemetry.clone()
    }

    /// Serves until Ctrl-C or SIGTERM, then flushes telemetry.
    pub async fn run_until_stopped(self) -> std::io::Result<ShutdownReport> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` resolves, then shuts down in order:
    ///
    /// 1. Stops accepting; requests in flight finish (`service_kit::http_server`).
    /// 2. At the same time, waits up to `shutdown_render_drain` for the renders in
    ///    progress, including those whose client has gone (a render is a task of its
    ///    own, so the connections closing says nothing about it), then interrupts the
    ///    rest: each records its unfinished variants and completes as `interrupted` at
    ///    once, which also answers a client still waiting for it ([`crate::lifecycle`]).
    /// 3. Only then flushes telemetry within `shutdown_deadline`, so the records of the
    ///    renders that finished or were interrupted during the drain are sent too.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<ShutdownReport> {
        let telemetry = self.state.telemetry.clone();
        let runs = self.state.renderer.runs().clone();
        let render_drain = self.settings.shutdown_render_drain;
        let deadline = self.settings.shutdown_deadline;
        let telemetry_thread = self.telemetry_thread;
        tracing::info!(addr = %self.addr, "renderer listening");
        let stopping = CancellationToken::new();
        let served = {
            let stopping = stopping.clone();
            let signal = {
                let stopping = stopping.clone();
                async move {
                    stop.await;
                    stopping.cancel();
                }
            };
            let serve = service_kit::http_server::serve(
                self.listener,
                router(self.state),
                self.settings.http,
                signal,
            );
            async move {
                let served = serve.await;
                // Returned without the signal (an error): the renders still get drained.
                stopping.cancel();
                served
            }
        };
        let drained = async {
            stopping.cancelled().await;
            let until = tokio::time::Instant::now() + render_drain;
            // Interrupted renders record their end at once; the flush deadline bounds
            // the wait for that too.
            (until, runs.drain(until, deadline).await)
        };
        let (served, (until, mut drained)) = tokio::join!(served, drained);
        if runs.in_progress() > 0 {
            // Started after the drain had ended, by a request still being served (it
            // got its render slot late), whose client then left: drained within what
            // is left of the drain, or interrupted at once.
            let late = runs.drain(until, deadline).await;
            drained.in_progress += late.in_progress;
            drained.interrupted = late.interrupted;
            drained.abandoned = late.abandoned;
        }
        tracing::info!(
            in_progress = drained.in_progress,
            interrupted = drained.interrupted,
            abandoned = drained.abandoned,
            "renders drained"
        );
        let report = telemetry.shutdown(deadline).await;
        if let Some(thread) = telemetry_thread {
            // The publisher has reported; joining is quick.
            let _ = tokio::task::spawn_blocking(move || thread.stop()).await;
        }
        tracing::info!(
            emitted = report.emitted,
            published = report.published,
            dropped = report.dropped,
            left = report.left,
            interrupted_runs = drained.interrupted,
            "telemetry flushed"
        );
        served?;
        Ok(report)
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
