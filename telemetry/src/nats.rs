//! Building an async-nats connection from [`NatsConfig`], shared with the collector.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};

use crate::config::NatsConfig;

/// Command buffer of the client. Our publishers keep their in-flight window well below
/// it; other callers (the collector) only issue a few commands at a time.
pub const CLIENT_CAPACITY: usize = 2048;

/// Why a connection could not even be attempted (unreadable creds or CA file).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The creds file could not be read.
    #[error("cannot read NATS credentials file {path}: {source}")]
    Creds {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting failed (only when not retrying the initial connect).
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The URL(s).
        url: String,
        /// Why.
        source: async_nats::ConnectError,
    },
}

/// Connection options for `config`, with reconnects forever and events logged.
pub async fn connect_options(config: &NatsConfig) -> Result<ConnectOptions, ConnectError> {
    let mut options = match &config.creds_file {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| ConnectError::Creds {
                path: path.display().to_string(),
                source,
            })?,
        None => ConnectOptions::new(),
    };
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert_file, &config.tls_key_file) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(options
        .name(&config.connection_name)
        .client_capacity(CLIENT_CAPACITY)
        .connection_timeout(Duration::from_secs(3))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            // 0, 100 ms, 200 ms, ... capped at 2 s: quick to come back after a broker
            // restart, gentle while it stays down.
            Duration::from_millis((attempts as u64 * 100).min(2_000))
        })
        .event_callback(|event| async move {
            match event {
                Event::Connected => tracing::info!("nats connected"),
                Event::Disconnected => tracing::warn!("nats disconnected"),
                other => tracing::debug!(event = %other, "nats event"),
            }
        }))
}

/// Connects, waiting for the server (used by the collector, which cannot work
/// without it, and by tests).
pub async fn connect(config: &NatsConfig) -> Result<Client, ConnectError> {
    connect_options(config)
        .await?
        .connect(config.urls())
        .await
        .map_err(|source| ConnectError::Connect {
            url: config.url.clone(),
            source,
        })
}

/// Returns a client at once and connects in the background, retrying forever: what a
/// producer needs to start while the broker is down.
pub async fn connect_in_background(config: &NatsConfig) -> Result<Client, ConnectError> {
    connect_options(config)
        .await?
        .retry_on_initial_connect()
        .connect(config.urls())
        .await
        .map_err(|source| ConnectError::Connect {
            url: config.url.clone(),
            source,
        })
}
