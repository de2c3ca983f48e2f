//! How to reach NATS ([`NatsConfig`]) and building an async-nats client from it: the
//! SDK's publisher and the collector connect the same way.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::ConfigError;

/// Default NATS server (`NATS_URL`).
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// How to reach NATS. Shared by the SDK and the collector. The password and the token
/// are [`SecretString`]s: `{:?}` of any settings holding them prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated (`NATS_URL`).
    pub url: String,
    /// A `.creds` file (`NATS_CREDS`).
    pub creds_file: Option<PathBuf>,
    /// User name (`NATS_USER`), with [`NatsConfig::password`].
    pub user: Option<String>,
    /// Password (`NATS_PASSWORD`).
    pub password: Option<SecretString>,
    /// Token (`NATS_TOKEN`).
    pub token: Option<SecretString>,
    /// PEM file of the CA that signed the server's certificate (`NATS_TLS_CA`); setting
    /// it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (`NATS_TLS_CERT`), for servers that verify clients; with
    /// [`NatsConfig::tls_key_file`].
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (`NATS_TLS_KEY`).
    pub tls_key_file: Option<PathBuf>,
    /// Name shown in the server's connection list.
    pub connection_name: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_NATS_URL.to_owned(),
            creds_file: None,
            user: None,
            password: None,
            token: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            connection_name: "telemetry".to_owned(),
        }
    }
}

impl NatsConfig {
    /// The server URLs, split on commas.
    pub fn urls(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).collect()
    }

    /// Checks what can be checked without a network: URL syntax, that credentials
    /// are not contradictory, and that the TLS files exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let files = [
            ("NATS_TLS_CA", &self.tls_ca_file),
            ("NATS_TLS_CERT", &self.tls_cert_file),
            ("NATS_TLS_KEY", &self.tls_key_file),
            ("NATS_CREDS", &self.creds_file),
        ];
        for (setting, file) in files {
            if let Some(path) = file {
                if !path.is_file() {
                    return Err(ConfigError::new(
                        setting,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::new(
                "NATS_TLS_CERT/NATS_TLS_KEY",
                "set both or neither",
            ));
        }
        for url in self.urls() {
            url.parse::<async_nats::ServerAddr>().map_err(|err| {
                ConfigError::new("NATS_URL", format!("{url:?} is not a NATS URL: {err}"))
            })?;
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError::new(
                "NATS_USER/NATS_PASSWORD",
                "set both or neither",
            ));
        }
        let methods = [
            self.creds_file.is_some(),
            self.user.is_some(),
            self.token.is_some(),
        ];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError::new(
                "NATS_CREDS/NATS_USER/NATS_TOKEN",
                "choose one authentication method",
            ));
        }
        Ok(())
    }
}

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
        options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
    }
    if let Some(token) = &config.token {
        options = options.token(token.expose_secret().to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A user with a password, and a token as well.
    fn user_and_token() -> NatsConfig {
        NatsConfig {
            user: Some("someone".into()),
            password: Some("hunter2-password".into()),
            token: Some("sekrit-token".into()),
            ..Default::default()
        }
    }

    /// The SDK's config tests cover the URL, the TLS files and a half-set user; this is
    /// the rule only a full second credential trips.
    #[test]
    fn two_authentication_methods_are_refused() {
        let err = user_and_token().validate().unwrap_err();
        assert_eq!(err.setting, "NATS_CREDS/NATS_USER/NATS_TOKEN", "{err}");
        assert_eq!(
            err.to_string(),
            "invalid setting NATS_CREDS/NATS_USER/NATS_TOKEN: choose one authentication method"
        );
    }

    #[test]
    fn debug_prints_no_password_or_token() {
        let printed = format!("{:?}", user_and_token());
        assert!(printed.contains("someone"), "{printed}");
        for secret in ["hunter2-password", "sekrit-token"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
    }
}
