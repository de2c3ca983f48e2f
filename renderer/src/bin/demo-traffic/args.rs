//! The command line of the `demo-traffic` binary (the storefront player of
//! `scripts/demo.sh` and the compose file's `demo-traffic` service). A file of its own,
//! beside the binary rather than in the library, so that `renderer/tests/compose.rs`
//! can include it and check docker-compose.yml against the definition itself.

/// Default renderer base URL (`DEMO_RENDERER_URL`): the renderer's default address.
pub const DEFAULT_RENDERER_URL: &str = "http://127.0.0.1:8081";
/// Default pause between requests (`DEMO_INTERVAL_MS`): a steady trickle, not a load.
pub const DEFAULT_INTERVAL_MS: u64 = 1500;

/// `demo-traffic` flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "demo-traffic",
    about = "Send demo render requests to a renderer"
)]
pub struct DemoArgs {
    /// Renderer base URL.
    #[arg(long, env = "DEMO_RENDERER_URL", default_value = DEFAULT_RENDERER_URL)]
    pub renderer_url: String,
    /// Pause between requests.
    #[arg(long, env = "DEMO_INTERVAL_MS", default_value_t = DEFAULT_INTERVAL_MS)]
    pub interval_ms: u64,
    /// Requests to send (0 = until stopped).
    #[arg(long, env = "DEMO_COUNT", default_value_t = 0)]
    pub count: u64,
    /// Shopify app secret to sign app-proxy requests with (as the renderer expects).
    #[arg(long, env = "SHOPIFY_API_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
}
