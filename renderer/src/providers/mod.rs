//! Image providers: what turns a product photo, a room photo and a prompt into a
//! rendered variant. One trait, two implementations:
//!
//! - [`local::LocalProvider`]: composites locally with the `image` crate; optional
//!   injected latency, failures and hangs for demos and load tests.
//! - [`gemini::GeminiProvider`]: Google Gemini image generation over HTTP.
//!
//! The pipeline owns the timeout: a provider may take as long as it likes, the pipeline
//! stops waiting at the per-variant timeout and reports TIMEOUT.

use std::sync::Arc;

use crate::config::ProviderSettings;
use crate::input::InputImage;

pub mod gemini;
pub mod local;

/// Why a provider produced no image: reported as PROVIDER_ERROR with this message.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// A failure injected by the local provider's failure rate.
    #[error("injected provider failure (local provider failure rate)")]
    Injected,
    /// The HTTP request did not complete.
    #[error("provider request failed: {0}")]
    Transport(String),
    /// The API answered with an error.
    #[error("provider returned HTTP {status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's own message (or body excerpt).
        message: String,
    },
    /// The API answered without an image (blocked prompt, text only, ...).
    #[error("provider returned no image: {0}")]
    NoImage(String),
    /// Encoding or decoding an image failed.
    #[error("image processing failed: {0}")]
    Image(#[from] image::ImageError),
    /// The blocking compositing task died.
    #[error("render task failed: {0}")]
    Task(String),
}

/// One variant to render.
#[derive(Debug, Clone)]
pub struct RenderJob {
    /// The run it belongs to.
    pub run_id: String,
    /// The variant's id from the prompt pack.
    pub variant_id: String,
    /// The prompt actually sent (its hash is the variant's `final_prompt_hash`).
    pub prompt: String,
    /// The product photo.
    pub product: Arc<InputImage>,
    /// The room photo.
    pub room: Arc<InputImage>,
}

/// An image model. Returns PNG bytes.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The model name reported in `RunStarted.model`.
    fn model(&self) -> &str;
    /// Renders one variant to PNG.
    async fn render(&self, job: &RenderJob) -> Result<Vec<u8>, ProviderError>;
}

/// Builds the configured provider.
pub fn from_settings(settings: &ProviderSettings) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(match settings {
        ProviderSettings::Local(local) => Arc::new(local::LocalProvider::new(local.clone())),
        ProviderSettings::Gemini(gemini) => Arc::new(gemini::GeminiProvider::new(gemini.clone())?),
    })
}

/// Encodes `image` as PNG.
pub(crate) fn encode_png(image: &image::DynamicImage) -> Result<Vec<u8>, ProviderError> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}
