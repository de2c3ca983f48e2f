//! Settings: the command line (each flag with an environment variable behind it) and
//! the validated [`Settings`] the rest of the crate uses.
//!
//! Every bound has a named default here and a flag. A wrong value fails at start-up
//! with one line naming the setting, never later inside a request: a number out of
//! range is refused by its flag's `value_parser` (the one place its range is written;
//! `service_kit::cli::parse_or_exit` prints it on one line), anything else by
//! [`Settings::validate`] ([`ConfigError`]). The telemetry knobs are the SDK's to
//! check (`TelemetryConfig::validate`), as for any user of the SDK. Secrets
//! (`SHOPIFY_API_SECRET`, `GEMINI_API_KEY`, the NATS password and token) are
//! [`SecretString`]s: `{:?}` of the flags or the settings prints `[REDACTED]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use service_kit::cli::{LogFormat, NatsArgs};
use service_kit::http_server::{HttpArgs, HttpLimits};
pub use service_kit::ConfigError;
use service_kit::{ExposeSecret as _, SecretString};
use telemetry::TelemetryConfig;

/// Default listen address (`RENDERER_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8081";
/// Default image store directory (`IMAGE_STORE_DIR`).
pub const DEFAULT_IMAGE_STORE_DIR: &str = "data/images";
/// How long one variant may render before it is reported as TIMEOUT. Image models take
/// tens of seconds; past a minute the shopper has left.
pub const DEFAULT_VARIANT_TIMEOUT: Duration = Duration::from_secs(60);
/// Variants of one request rendered at once: a prompt pack usually has 4, and a provider
/// rate limit is per key, so one request should not take every slot.
pub const DEFAULT_VARIANT_CONCURRENCY: usize = 4;
/// Largest request body. Two base64 photos of a few MiB each fit.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest decoded input image file (bytes after base64).
pub const DEFAULT_MAX_IMAGE_BYTES: usize = 12 * 1024 * 1024;
/// Most pixels (width x height) an input image may have: decoding is width x height x 4
/// bytes of memory, so this caps one request's memory.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 40_000_000;
/// Most bytes one input image may take once decoded, as the decoder reports them before
/// allocating (width x height x bytes per pixel). Pixels alone do not bound memory: a
/// 16-bit RGBA pixel is 8 bytes. The default fits an 8-bit RGBA image at
/// [`DEFAULT_MAX_IMAGE_PIXELS`]; 16-bit images are converted to 8-bit as soon as they are
/// decoded, so what a render holds is 4 bytes a pixel at most.
pub const DEFAULT_MAX_DECODED_IMAGE_BYTES: u64 = 4 * DEFAULT_MAX_IMAGE_PIXELS;
/// Renders in progress at once per core with the local provider, across all requests. A
/// render holds both decoded images from decoding to completion and composites on the
/// CPU, so more renders than cores only add memory.
pub const RENDER_CONCURRENCY_PER_CORE_LOCAL: usize = 1;
/// Renders in progress at once per core with Gemini: a Gemini render mostly waits on the
/// network, so a core can carry several; the bound is there for memory (each render
/// holds its two decoded images, at most 2 x `MAX_DECODED_IMAGE_BYTES`).
pub const RENDER_CONCURRENCY_PER_CORE_GEMINI: usize = 4;
/// How long a request may wait for a render slot before it is answered 503 with
/// `Retry-After`. A local render of storefront photos takes tens of milliseconds, so a
/// wait of seconds means a backlog that waiting longer would only grow.
pub const DEFAULT_RENDER_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// Most variants in one prompt pack.
pub const DEFAULT_MAX_VARIANTS: usize = 8;
/// How far a signed app-proxy `timestamp` may be from now, either way, before the
/// request is refused: Shopify's own libraries allow 90 seconds.
pub const DEFAULT_SHOPIFY_PROXY_MAX_AGE: Duration = Duration::from_secs(90);
/// How long shutdown waits for the telemetry queue to drain (and, before that, at most
/// as long for renders interrupted at [`DEFAULT_SHUTDOWN_RENDER_DRAIN`] to record their
/// end, which they do at once).
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// How long shutdown waits for the renders in progress, including those whose client
/// has gone, before it interrupts the rest. A separate bound from the telemetry flush's
/// ([`DEFAULT_SHUTDOWN_DEADLINE`]), which comes after it: renders that take the whole
/// drain must still leave the flush its time, or their records would be lost. 20 s
/// plus the 5 s flush fits a 30 s grace period (Kubernetes' default, and
/// `docker-compose.yml`'s); a local render takes milliseconds, a Gemini one tens of
/// seconds, so a slow Gemini render is the one that gets interrupted.
pub const DEFAULT_SHUTDOWN_RENDER_DRAIN: Duration = Duration::from_secs(20);
/// Longest `SHUTDOWN_RENDER_DRAIN_MS`: an hour; no orchestrator waits longer.
pub const MAX_SHUTDOWN_RENDER_DRAIN_MS: u64 = 3_600_000;
/// Default Gemini model (`GEMINI_MODEL`).
pub const DEFAULT_GEMINI_MODEL: &str = "gemini-2.5-flash-image";
/// Default Gemini API base URL (`GEMINI_BASE_URL`).
pub const DEFAULT_GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com";
/// Model name reported for the local compositor.
pub const LOCAL_MODEL: &str = "local-composite";

/// The default of `RENDER_CONCURRENCY`: the cores this process may use times the
/// provider's renders per core ([`RENDER_CONCURRENCY_PER_CORE_LOCAL`],
/// [`RENDER_CONCURRENCY_PER_CORE_GEMINI`]).
pub fn default_render_concurrency(provider: ProviderKind) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    cores
        * match provider {
            ProviderKind::Local => RENDER_CONCURRENCY_PER_CORE_LOCAL,
            ProviderKind::Gemini => RENDER_CONCURRENCY_PER_CORE_GEMINI,
        }
}

/// Which image model renders variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    /// Composites the product into the room locally (no network): demos, tests, load.
    Local,
    /// Google Gemini image generation over HTTP.
    Gemini,
}

/// The command line. Flags are parsed here and checked by [`Cli::settings`].
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "renderer", version, about = "See It Now render service")]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "RENDERER_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// HTTP read timeouts and connection bound (`HTTP_HEADER_TIMEOUT_MS`, ...).
    #[command(flatten)]
    pub http: HttpArgs,
    /// NATS connection and telemetry subjects.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Send telemetry (`on`) or not (`off`).
    #[arg(long, env = "TELEMETRY", default_value = "on")]
    pub telemetry: String,
    /// Events the SDK holds while the broker is slow or away; more are dropped, counted.
    #[arg(long, env = "TELEMETRY_QUEUE_CAPACITY", default_value_t = telemetry::config::DEFAULT_QUEUE_CAPACITY)]
    pub telemetry_queue_capacity: usize,
    /// Publishes awaiting their acks at once (at most 1024).
    #[arg(long, env = "TELEMETRY_MAX_IN_FLIGHT", default_value_t = telemetry::config::DEFAULT_MAX_IN_FLIGHT)]
    pub telemetry_max_in_flight: usize,
    /// How long the SDK lets a trickle of events gather before publishing, in ms.
    #[arg(long, env = "TELEMETRY_PUBLISH_LINGER_MS", default_value_t = telemetry::config::DEFAULT_PUBLISH_LINGER.as_millis() as u64)]
    pub telemetry_publish_linger_ms: u64,
    /// Image provider.
    #[arg(long, env = "RENDER_PROVIDER", value_enum, default_value = "local")]
    pub provider: ProviderKind,
    /// Local provider: added latency per variant, in milliseconds.
    #[arg(long, env = "LOCAL_LATENCY_MS", default_value_t = 0)]
    pub local_latency_ms: u64,
    /// Local provider: share of variants that fail (0..=1).
    #[arg(long, env = "LOCAL_FAILURE_RATE", default_value_t = 0.0)]
    pub local_failure_rate: f64,
    /// Local provider: share of variants that hang until the variant timeout (0..=1).
    #[arg(long, env = "LOCAL_TIMEOUT_RATE", default_value_t = 0.0)]
    pub local_timeout_rate: f64,
    /// Local provider: seed of the injected faults (same seed, same faults).
    #[arg(long, env = "LOCAL_FAULT_SEED", default_value_t = 0)]
    pub local_fault_seed: u64,
    /// Gemini model name.
    #[arg(long, env = "GEMINI_MODEL", default_value = DEFAULT_GEMINI_MODEL)]
    pub gemini_model: String,
    /// Gemini API key (required with `--provider gemini`).
    #[arg(long, env = "GEMINI_API_KEY", hide_env_values = true)]
    pub gemini_api_key: Option<SecretString>,
    /// Gemini API base URL.
    #[arg(long, env = "GEMINI_BASE_URL", default_value = DEFAULT_GEMINI_BASE_URL)]
    pub gemini_base_url: String,
    /// Directory of the image store.
    #[arg(long, env = "IMAGE_STORE_DIR", default_value = DEFAULT_IMAGE_STORE_DIR)]
    pub image_store_dir: PathBuf,
    /// Per-variant timeout, in milliseconds.
    #[arg(long, env = "VARIANT_TIMEOUT_MS", default_value_t = DEFAULT_VARIANT_TIMEOUT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub variant_timeout_ms: u64,
    /// Variants of one request rendered at once.
    #[arg(long, env = "VARIANT_CONCURRENCY", default_value_t = DEFAULT_VARIANT_CONCURRENCY,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub variant_concurrency: usize,
    /// Largest request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_body_bytes: usize,
    /// Largest input image, in bytes.
    #[arg(long, env = "MAX_IMAGE_BYTES", default_value_t = DEFAULT_MAX_IMAGE_BYTES,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_image_bytes: usize,
    /// Most pixels of an input image.
    #[arg(long, env = "MAX_IMAGE_PIXELS", default_value_t = DEFAULT_MAX_IMAGE_PIXELS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_image_pixels: u64,
    /// Most bytes an input image may take once decoded (width x height x bytes per pixel).
    #[arg(long, env = "MAX_DECODED_IMAGE_BYTES", default_value_t = DEFAULT_MAX_DECODED_IMAGE_BYTES,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_decoded_image_bytes: u64,
    /// Renders in progress at once across all requests (image decoding to completion).
    /// Default: the number of cores with the local provider, four per core with Gemini.
    #[arg(long, env = "RENDER_CONCURRENCY", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub render_concurrency: Option<usize>,
    /// How long a request waits for a render slot before it gets 503, in milliseconds
    /// (0: answer 503 at once when every slot is taken).
    #[arg(long, env = "RENDER_QUEUE_WAIT_MS", default_value_t = DEFAULT_RENDER_QUEUE_WAIT.as_millis() as u64)]
    pub render_queue_wait_ms: u64,
    /// Most variants in one request.
    #[arg(long, env = "MAX_VARIANTS", default_value_t = DEFAULT_MAX_VARIANTS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_variants: usize,
    /// Shopify app secret: when set, requests must carry a valid app-proxy signature.
    #[arg(long, env = "SHOPIFY_API_SECRET", hide_env_values = true)]
    pub shopify_api_secret: Option<SecretString>,
    /// How far the signed app-proxy timestamp may be from now, either way, in seconds.
    #[arg(long, env = "SHOPIFY_PROXY_MAX_AGE_SECS", default_value_t = DEFAULT_SHOPIFY_PROXY_MAX_AGE.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub shopify_proxy_max_age_secs: u64,
    /// How long shutdown waits for queued telemetry, in milliseconds (after the renders
    /// in progress have ended or been interrupted).
    #[arg(long, env = "SHUTDOWN_DEADLINE_MS", default_value_t = DEFAULT_SHUTDOWN_DEADLINE.as_millis() as u64)]
    pub shutdown_deadline_ms: u64,
    /// How long shutdown waits for the renders in progress, in milliseconds; those still
    /// going then are completed as `interrupted` (0: interrupt them at once).
    #[arg(long, env = "SHUTDOWN_RENDER_DRAIN_MS", default_value_t = DEFAULT_SHUTDOWN_RENDER_DRAIN.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(..=MAX_SHUTDOWN_RENDER_DRAIN_MS))]
    pub shutdown_render_drain_ms: u64,
    /// Log lines as human-readable text or as one JSON object per line. Read by `main`
    /// only; here so every flag of the binary is in one type (the compose test reads it).
    #[arg(long = "log-format", env = "LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: LogFormat,
}

/// Local provider settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSettings {
    /// Added latency per variant.
    pub latency: Duration,
    /// Share of variants that fail with a provider error.
    pub failure_rate: f64,
    /// Share of variants that never finish (and so hit the variant timeout).
    pub timeout_rate: f64,
    /// Seed of the fault draw.
    pub seed: u64,
}

impl Default for LocalSettings {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            failure_rate: 0.0,
            timeout_rate: 0.0,
            seed: 0,
        }
    }
}

/// Gemini provider settings.
#[derive(Debug, Clone)]
pub struct GeminiSettings {
    /// Model name, e.g. `gemini-2.5-flash-image`.
    pub model: String,
    /// API key, sent as `x-goog-api-key`.
    pub api_key: SecretString,
    /// Base URL, without a trailing slash.
    pub base_url: String,
}

/// The provider and its settings.
#[derive(Debug, Clone)]
pub enum ProviderSettings {
    /// See [`ProviderKind::Local`].
    Local(LocalSettings),
    /// See [`ProviderKind::Gemini`].
    Gemini(GeminiSettings),
}

/// Bounds on one render request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// See [`DEFAULT_MAX_IMAGE_BYTES`].
    pub max_image_bytes: usize,
    /// See [`DEFAULT_MAX_IMAGE_PIXELS`].
    pub max_image_pixels: u64,
    /// See [`DEFAULT_MAX_DECODED_IMAGE_BYTES`].
    pub max_decoded_image_bytes: u64,
    /// Renders in progress at once across all requests: see [`default_render_concurrency`].
    pub render_concurrency: usize,
    /// See [`DEFAULT_RENDER_QUEUE_WAIT`].
    pub render_queue_wait: Duration,
    /// See [`DEFAULT_SHOPIFY_PROXY_MAX_AGE`].
    pub shopify_proxy_max_age: Duration,
    /// See [`DEFAULT_MAX_VARIANTS`].
    pub max_variants: usize,
    /// See [`DEFAULT_VARIANT_TIMEOUT`].
    pub variant_timeout: Duration,
    /// See [`DEFAULT_VARIANT_CONCURRENCY`].
    pub variant_concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
            max_decoded_image_bytes: DEFAULT_MAX_DECODED_IMAGE_BYTES,
            render_concurrency: default_render_concurrency(ProviderKind::Local),
            render_queue_wait: DEFAULT_RENDER_QUEUE_WAIT,
            shopify_proxy_max_age: DEFAULT_SHOPIFY_PROXY_MAX_AGE,
            max_variants: DEFAULT_MAX_VARIANTS,
            variant_timeout: DEFAULT_VARIANT_TIMEOUT,
            variant_concurrency: DEFAULT_VARIANT_CONCURRENCY,
        }
    }
}

/// Everything [`crate::Application::build`] needs, already checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen; port 0 picks a free one (tests).
    pub addr: SocketAddr,
    /// Header, body and idle timeouts and the connection bound of the HTTP server.
    pub http: HttpLimits,
    /// `None` switches telemetry off.
    pub telemetry: Option<TelemetryConfig>,
    /// The image model.
    pub provider: ProviderSettings,
    /// Image store root.
    pub image_store_dir: PathBuf,
    /// Request bounds.
    pub limits: Limits,
    /// Shopify app secret; `None` accepts unsigned requests (local development).
    pub shopify_api_secret: Option<SecretString>,
    /// See [`DEFAULT_SHUTDOWN_DEADLINE`].
    pub shutdown_deadline: Duration,
    /// See [`DEFAULT_SHUTDOWN_RENDER_DRAIN`].
    pub shutdown_render_drain: Duration,
}

impl Settings {
    /// Settings for a local run on `addr` with the local provider: the defaults, no
    /// telemetry, no secret. Tests start from this and change what they need.
    pub fn local(addr: SocketAddr, image_store_dir: PathBuf) -> Self {
        Self {
            addr,
            http: HttpLimits::default(),
            telemetry: None,
            provider: ProviderSettings::Local(LocalSettings::default()),
            image_store_dir,
            limits: Limits::default(),
            shopify_api_secret: None,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
            shutdown_render_drain: DEFAULT_SHUTDOWN_RENDER_DRAIN,
        }
    }

    /// Checks what the flags' ranges cannot: fault rates (fractions), the provider's
    /// key, model and URL, the secret, and the telemetry settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let ProviderSettings::Local(local) = &self.provider {
            for (setting, rate) in [
                ("LOCAL_FAILURE_RATE", local.failure_rate),
                ("LOCAL_TIMEOUT_RATE", local.timeout_rate),
            ] {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(ConfigError::new(setting, "must be between 0 and 1"));
                }
            }
            if local.failure_rate + local.timeout_rate > 1.0 {
                return Err(ConfigError::new(
                    "LOCAL_FAILURE_RATE/LOCAL_TIMEOUT_RATE",
                    "their sum must be at most 1",
                ));
            }
        }
        if let ProviderSettings::Gemini(gemini) = &self.provider {
            if gemini.api_key.expose_secret().is_empty() {
                return Err(ConfigError::new("GEMINI_API_KEY", "must not be empty"));
            }
            if gemini.model.is_empty() || gemini.model.contains(['/', '?', '#', ' ']) {
                return Err(ConfigError::new(
                    "GEMINI_MODEL",
                    format!("{:?} is not a model name", gemini.model),
                ));
            }
            reqwest::Url::parse(&gemini.base_url)
                .map_err(|err| ConfigError::new("GEMINI_BASE_URL", err.to_string()))?;
        }
        if matches!(&self.shopify_api_secret, Some(secret) if secret.expose_secret().is_empty()) {
            return Err(ConfigError::new(
                "SHOPIFY_API_SECRET",
                "must not be empty when set",
            ));
        }
        if let Some(telemetry) = &self.telemetry {
            telemetry.validate()?;
        }
        Ok(())
    }
}

impl Cli {
    /// Turns the flags into checked [`Settings`].
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let addr = self
            .addr
            .parse()
            .map_err(|err| ConfigError::new("RENDERER_ADDR", format!("{:?}: {err}", self.addr)))?;
        let telemetry = match self.telemetry.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" => Some(TelemetryConfig {
                nats: self.nats.nats_config("renderer"),
                subject_prefix: self.nats.subject_prefix.clone(),
                stream: self.nats.stream.clone(),
                stream_max_bytes: self.nats.stream_max_bytes,
                stream_replicas: self.nats.stream_replicas,
                service: "renderer".into(),
                queue_capacity: self.telemetry_queue_capacity,
                max_in_flight: self.telemetry_max_in_flight,
                publish_linger: Duration::from_millis(self.telemetry_publish_linger_ms),
                ..Default::default()
            }),
            "off" | "false" | "0" => None,
            other => {
                return Err(ConfigError::new(
                    "TELEMETRY",
                    format!("{other:?}: expected on or off"),
                ))
            }
        };
        let provider = match self.provider {
            ProviderKind::Local => ProviderSettings::Local(LocalSettings {
                latency: Duration::from_millis(self.local_latency_ms),
                failure_rate: self.local_failure_rate,
                timeout_rate: self.local_timeout_rate,
                seed: self.local_fault_seed,
            }),
            ProviderKind::Gemini => ProviderSettings::Gemini(GeminiSettings {
                model: self.gemini_model.clone(),
                api_key: self.gemini_api_key.clone().ok_or_else(|| {
                    ConfigError::new("GEMINI_API_KEY", "required with RENDER_PROVIDER=gemini")
                })?,
                base_url: self.gemini_base_url.trim_end_matches('/').to_owned(),
            }),
        };
        let settings = Settings {
            addr,
            http: self.http.limits(),
            telemetry,
            provider,
            image_store_dir: self.image_store_dir.clone(),
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                max_image_bytes: self.max_image_bytes,
                max_image_pixels: self.max_image_pixels,
                max_decoded_image_bytes: self.max_decoded_image_bytes,
                render_concurrency: self
                    .render_concurrency
                    .unwrap_or_else(|| default_render_concurrency(self.provider)),
                render_queue_wait: Duration::from_millis(self.render_queue_wait_ms),
                shopify_proxy_max_age: Duration::from_secs(self.shopify_proxy_max_age_secs),
                max_variants: self.max_variants,
                variant_timeout: Duration::from_millis(self.variant_timeout_ms),
                variant_concurrency: self.variant_concurrency,
            },
            shopify_api_secret: self.shopify_api_secret.clone(),
            shutdown_deadline: Duration::from_millis(self.shutdown_deadline_ms),
            shutdown_render_drain: Duration::from_millis(self.shutdown_render_drain_ms),
        };
        settings.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["renderer"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().settings()
    }

    #[test]
    fn defaults_are_valid() {
        let settings = parse(&[]).unwrap();
        assert_eq!(settings.addr.to_string(), DEFAULT_ADDR);
        assert!(settings.telemetry.is_some());
        assert_eq!(settings.limits, Limits::default());
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (args, setting) in [
            (vec!["--addr", "nowhere"], "RENDERER_ADDR"),
            (vec!["--telemetry", "maybe"], "TELEMETRY"),
            (vec!["--local-failure-rate", "1.5"], "LOCAL_FAILURE_RATE"),
            (vec!["--provider", "gemini"], "GEMINI_API_KEY"),
            (
                vec![
                    "--provider",
                    "gemini",
                    "--gemini-api-key",
                    "k",
                    "--gemini-base-url",
                    "::",
                ],
                "GEMINI_BASE_URL",
            ),
            (vec!["--stream", "a.b"], "TELEMETRY_STREAM"),
            (vec!["--shopify-api-secret", ""], "SHOPIFY_API_SECRET"),
        ] {
            let err = parse(&args).unwrap_err();
            assert_eq!(err.setting, setting, "{args:?}: {err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    /// Ranges are the flags' `value_parser`s: clap refuses the value, and the line
    /// `main` prints names the variable, the flag and the range.
    #[test]
    fn out_of_range_values_name_their_setting_and_range() {
        // `range(1..)`, as clap says it (its end is the largest u64).
        let at_least_one = format!("1..{}", u64::MAX);
        let at_least_one = at_least_one.as_str();
        for (flag, setting, range) in [
            ("--variant-concurrency", "VARIANT_CONCURRENCY", at_least_one),
            ("--render-concurrency", "RENDER_CONCURRENCY", at_least_one),
            (
                "--max-decoded-image-bytes",
                "MAX_DECODED_IMAGE_BYTES",
                at_least_one,
            ),
            ("--variant-timeout-ms", "VARIANT_TIMEOUT_MS", at_least_one),
            (
                "--shopify-proxy-max-age-secs",
                "SHOPIFY_PROXY_MAX_AGE_SECS",
                at_least_one,
            ),
            (
                "--http-header-timeout-ms",
                "HTTP_HEADER_TIMEOUT_MS",
                "1..=3600000",
            ),
            (
                "--http-max-connections",
                "HTTP_MAX_CONNECTIONS",
                "1..=1000000",
            ),
        ] {
            // One line: `main` prints it after `renderer: `.
            let line = service_kit::cli::refused_value::<Cli>(&["renderer", flag, "0"]);
            let line = line.unwrap_or_else(|| panic!("{flag} 0: not refused"));
            let start = format!("invalid setting {setting}: invalid value '0' for '{flag} ");
            let end = format!("0 is not in {range}");
            assert!(line.starts_with(&start) && line.ends_with(&end), "{line}");
            assert_eq!(line.lines().count(), 1, "{line}");
        }
    }

    #[test]
    fn the_render_drain_defaults_to_its_const_and_refuses_more_than_an_hour() {
        let settings = parse(&[]).unwrap();
        assert_eq!(
            settings.shutdown_render_drain,
            DEFAULT_SHUTDOWN_RENDER_DRAIN
        );
        let settings = parse(&["--shutdown-render-drain-ms", "0"]).unwrap();
        assert_eq!(settings.shutdown_render_drain, Duration::ZERO);
        let line = service_kit::cli::refused_value::<Cli>(&[
            "renderer",
            "--shutdown-render-drain-ms",
            "3600001",
        ])
        .expect("over an hour is refused");
        assert!(
            line.starts_with("invalid setting SHUTDOWN_RENDER_DRAIN_MS: ")
                && line.ends_with("3600001 is not in 0..=3600000"),
            "{line}"
        );
    }

    #[test]
    fn debug_of_the_flags_and_the_settings_shows_no_secret() {
        let secrets = ["shopify-secret-1", "gemini-key-2", "nats-token-3"];
        let argv = [
            "renderer",
            "--shopify-api-secret",
            secrets[0],
            "--provider",
            "gemini",
            "--gemini-api-key",
            secrets[1],
            "--nats-token",
            secrets[2],
        ];
        let cli = Cli::try_parse_from(argv).unwrap();
        let settings = cli.settings().unwrap();
        let printed = [format!("{cli:?}"), format!("{settings:?}")];
        assert!(printed[1].contains(DEFAULT_GEMINI_MODEL), "{}", printed[1]);
        for secret in secrets {
            for printed in &printed {
                assert!(!printed.contains(secret), "{secret} in {printed}");
            }
        }
    }
}
