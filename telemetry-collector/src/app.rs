//! Wiring: [`Application::build`] validates settings, opens and migrates the store,
//! connects to NATS, attaches the consumer and binds the HTTP port (port 0 picks a
//! free one); [`Application::run_until_stopped`] runs ingest and HTTP until the
//! [`ShutdownHandle`] fires, then lets the batch in flight finish.

use std::net::SocketAddr;
use std::sync::Arc;

use service_kit::ExposeSecret as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Settings};
use crate::http::{router, AppState};
use crate::ingest::{self, Ingest};
use crate::metrics::Metrics;
use crate::store::{self, Store, StoreError};

/// How long start-up waits for the first attach before it goes on and leaves the
/// retries to the ingest loop: long enough for a broker that is up to answer (its
/// own request timeout is 5 s), short enough that `/readyz` is soon there to say why.
pub const START_ATTACH_WAIT: std::time::Duration = std::time::Duration::from_secs(6);

/// Why the collector could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database could not be opened or migrated.
    #[error("DATABASE_URL: {0}")]
    Store(#[from] StoreError),
    /// NATS could not be reached.
    #[error("NATS_URL: {0}")]
    Nats(#[from] service_kit::nats::ConnectError),
    /// The stream or consumer could not be set up.
    #[error(transparent)]
    Attach(#[from] ingest::AttachError),
    /// The HTTP address could not be bound.
    #[error("COLLECTOR_ADDR: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Stops a running collector. `Clone`; any clone stops it.
#[derive(Debug, Clone)]
pub struct ShutdownHandle(CancellationToken);

impl ShutdownHandle {
    /// Asks the collector to stop: no new batch is taken, the one in flight finishes.
    pub fn shutdown(&self) {
        self.0.cancel();
    }
}

/// A collector, built and ready to run.
pub struct Application {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    listener: Option<TcpListener>,
    port: u16,
    ingest: Option<Ingest>,
    nats: Option<async_nats::Client>,
    max_body_bytes: usize,
    http: service_kit::http_server::HttpLimits,
    monitor: crate::config::MonitorSettings,
    retention: Option<crate::retention::Retention>,
    shutdown: CancellationToken,
}

impl Application {
    /// Validates `settings` and sets everything up; fails with the setting to fix.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let (subjects, spec) = settings.validate()?;
        let store = store::connect(settings.database_url.expose_secret(), &settings.store).await?;
        store.migrate().await?;
        let metrics = Arc::new(Metrics::default());
        let (ingest, nats) = if settings.ingest {
            // Connects in the background, retrying for ever: a collector started
            // before the broker (a whole-cluster restart) waits for it, `/readyz`
            // saying why, as a running one does.
            let client = service_kit::nats::connect_in_background(&settings.nats).await?;
            let js = async_nats::jetstream::new(client.clone());
            // Attach once now so a stream the broker refuses (its settings, its
            // subjects) fails start-up; if JetStream is only unavailable (no quorum,
            // not reachable yet) the ingest loop keeps trying.
            match tokio::time::timeout(START_ATTACH_WAIT, ingest::attach(&js, &spec, &settings))
                .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(err)) if !err.is_transient() => return Err(err.into()),
                Ok(Err(err)) => {
                    metrics.set_consumer_detached(err.to_string());
                    tracing::warn!(reason = %err, "JetStream not available yet; starting anyway and retrying");
                }
                Err(_) => {
                    let reason = format!(
                        "JetStream did not answer within {START_ATTACH_WAIT:?} (broker unreachable or without quorum)"
                    );
                    tracing::warn!(%reason, "starting anyway and retrying");
                    metrics.set_consumer_detached(reason);
                }
            }
            let ingest = Ingest {
                js,
                subjects,
                spec,
                settings: settings.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
                lost_pulls: Default::default(),
            };
            (Some(ingest), Some(client))
        } else {
            (None, None)
        };
        let (listener, port) = match settings.http_addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                let port = listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { addr, source })?
                    .port();
                (Some(listener), port)
            }
            None => (None, 0),
        };
        Ok(Self {
            store,
            metrics,
            listener,
            port,
            ingest,
            nats,
            max_body_bytes: settings.max_body_bytes,
            http: settings.http,
            monitor: settings.monitor.clone(),
            retention: settings.retention,
            shutdown: CancellationToken::new(),
        })
    }

    /// The bound HTTP port (0 when HTTP is off).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The store, for tests and tools that read what was written.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// A handle that stops [`Application::run_until_stopped`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.shutdown.clone())
    }

    /// Runs ingest and HTTP until the shutdown handle fires; returns once the batch in
    /// flight is done and the HTTP server has drained.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let shutdown = self.shutdown.clone();
        // The backlog gauges, read from the broker beside ingest.
        let backlog = self
            .ingest
            .as_ref()
            .map(|ingest| tokio::spawn(crate::backlog::watch(ingest, shutdown.clone())));
        let ingest = self.ingest.map(|ingest| {
            let token = shutdown.clone();
            tokio::spawn(ingest.run(token))
        });
        let http = self.listener.map(|listener| {
            let state = AppState {
                store: self.store.clone(),
                metrics: self.metrics.clone(),
                nats: self.nats.clone(),
                max_body_bytes: self.max_body_bytes,
                monitor: crate::monitor::Monitor::new(&self.monitor, shutdown.clone()),
            };
            let token = shutdown.clone();
            let limits = self.http;
            tokio::spawn(async move {
                let stop = async move { token.cancelled().await };
                service_kit::http_server::serve(listener, router(state), limits, stop).await
            })
        });
        // Retention beside ingest: small transactions, stopped with everything else.
        let retention = self
            .retention
            .map(|retention| tokio::spawn(retention.run(self.store.clone(), shutdown.clone())));
        let mut result = Ok(());
        if let Some(ingest) = ingest {
            if let Err(err) = ingest.await {
                tracing::error!(error = %err, "ingest task failed");
            }
        }
        if let Some(http) = http {
            result = match http.await {
                Ok(served) => served,
                Err(err) => Err(std::io::Error::other(err)),
            };
        }
        if let Some(retention) = retention {
            let _ = retention.await;
        }
        if let Some(backlog) = backlog {
            let _ = backlog.await;
        }
        if let Some(client) = self.nats {
            let _ = client.flush().await;
        }
        self.store.close().await;
        result
    }

    /// Runs the collector on a task: what tests and embedding code want.
    pub fn spawn(self) -> RunningCollector {
        let port = self.port;
        let store = self.store.clone();
        let metrics = self.metrics.clone();
        let handle = self.shutdown_handle();
        let task = tokio::spawn(self.run_until_stopped());
        RunningCollector {
            port,
            store,
            metrics,
            handle,
            task,
        }
    }
}

/// A collector running on a task ([`Application::spawn`]).
pub struct RunningCollector {
    /// HTTP port (0 when HTTP is off).
    pub port: u16,
    /// The store it writes.
    pub store: Arc<dyn Store>,
    /// Its counters.
    pub metrics: Arc<Metrics>,
    handle: ShutdownHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningCollector {
    /// `http://127.0.0.1:{port}`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A handle that stops it.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Stops it and waits until the batch in flight is done.
    pub async fn stop(self) {
        self.handle.shutdown();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "collector stopped with an error"),
            Err(err) => tracing::warn!(error = %err, "collector task failed"),
        }
    }

    /// Aborts it without waiting (simulates a crash: nothing in flight is acked).
    pub fn abort(self) {
        self.task.abort();
    }
}
