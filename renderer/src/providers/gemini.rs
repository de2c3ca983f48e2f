//! Gemini image generation over HTTP (`models/{model}:generateContent`).
//!
//! One request per variant: the prompt as text and both photos as `inline_data`
//! (product first, then room), asking for an image back. The answer's first inline
//! image becomes the variant (re-encoded as PNG when the model sent another format).
//! API errors (`{"error": {"code", "message", "status"}}`), blocked prompts and
//! text-only answers all become [`ProviderError`]s whose message says which.

use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use service_kit::ExposeSecret as _;

use super::{encode_png, Provider, ProviderError, RenderJob};
use crate::config::GeminiSettings;

/// Connecting to the API must not take long; the per-variant timeout bounds the rest.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response body read: a generated image is a few MiB of base64.
pub const MAX_RESPONSE_BYTES: usize = 48 * 1024 * 1024;
/// How much of an unparseable error body goes into the message.
const ERROR_EXCERPT_BYTES: usize = 512;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct GeminiProvider {
    settings: GeminiSettings,
    client: reqwest::Client,
    url: String,
}

#[derive(Serialize)]
struct GenerateRequest<'a> {
    contents: [Content<'a>; 1],
    #[serde(rename = "generationConfig")]
    generation_config: GenerationConfig,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<RequestPart<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum RequestPart<'a> {
    Text { text: &'a str },
    Inline { inline_data: InlineOut<'a> },
}

#[derive(Serialize)]
struct InlineOut<'a> {
    mime_type: &'a str,
    data: String,
}

#[derive(Serialize)]
struct GenerationConfig {
    #[serde(rename = "responseModalities")]
    response_modalities: [&'static str; 2],
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<ResponseContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ResponseContent {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponsePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default, alias = "inline_data")]
    inline_data: Option<InlineIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineIn {
    #[serde(default, alias = "mime_type")]
    mime_type: Option<String>,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ApiError,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl GeminiProvider {
    /// A client for `settings`.
    pub fn new(settings: GeminiSettings) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|err| ProviderError::Transport(err.to_string()))?;
        let url = format!(
            "{}/v1beta/models/{}:generateContent",
            settings.base_url.trim_end_matches('/'),
            settings.model
        );
        Ok(Self {
            settings,
            client,
            url,
        })
    }

    async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, ProviderError> {
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| ProviderError::Transport(err.to_string()))?
        {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ProviderError::Transport(format!(
                    "response over {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// The API's error message, or an excerpt of whatever came back.
fn api_error(status: u16, body: &[u8]) -> ProviderError {
    let message = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) if !error.status.is_empty() => {
            format!("{}: {}", error.status, error.message)
        }
        Ok(ErrorBody { error }) => error.message,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            text.chars().take(ERROR_EXCERPT_BYTES).collect()
        }
    };
    ProviderError::Api { status, message }
}

/// The first image of a successful answer, or why there is none.
fn first_image(response: GenerateResponse) -> Result<(Option<String>, Vec<u8>), ProviderError> {
    if let Some(reason) = response.prompt_feedback.and_then(|f| f.block_reason) {
        return Err(ProviderError::NoImage(format!("prompt blocked: {reason}")));
    }
    let mut finish = None;
    let mut text = None;
    for candidate in response.candidates {
        finish = finish.or(candidate.finish_reason);
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(inline) = part.inline_data {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(inline.data.trim())
                    .map_err(|err| ProviderError::NoImage(format!("image is not base64: {err}")))?;
                return Ok((inline.mime_type, bytes));
            }
            text = text.or(part.text);
        }
    }
    Err(ProviderError::NoImage(match (finish, text) {
        (_, Some(text)) => format!(
            "model answered with text only: {}",
            text.chars().take(200).collect::<String>()
        ),
        (Some(finish), None) => format!("no image part (finish reason {finish})"),
        (None, None) => "no candidates".to_owned(),
    }))
}

#[async_trait::async_trait]
impl Provider for GeminiProvider {
    fn model(&self) -> &str {
        &self.settings.model
    }

    async fn render(&self, job: &RenderJob) -> Result<Vec<u8>, ProviderError> {
        let request = GenerateRequest {
            contents: [Content {
                role: "user",
                parts: vec![
                    RequestPart::Text { text: &job.prompt },
                    RequestPart::Inline {
                        inline_data: InlineOut {
                            mime_type: job.product.mime_type(),
                            data: b64(&job.product.bytes),
                        },
                    },
                    RequestPart::Inline {
                        inline_data: InlineOut {
                            mime_type: job.room.mime_type(),
                            data: b64(&job.room.bytes),
                        },
                    },
                ],
            }],
            generation_config: GenerationConfig {
                response_modalities: ["TEXT", "IMAGE"],
            },
        };
        let response = self
            .client
            .post(&self.url)
            .header("x-goog-api-key", self.settings.api_key.expose_secret())
            .json(&request)
            .send()
            .await
            .map_err(|err| ProviderError::Transport(err.without_url().to_string()))?;
        let status = response.status();
        let body = Self::read_body(response).await?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &body));
        }
        let parsed: GenerateResponse = serde_json::from_slice(&body)
            .map_err(|err| ProviderError::NoImage(format!("unreadable answer: {err}")))?;
        let (mime, bytes) = first_image(parsed)?;
        if mime.as_deref() == Some("image/png") && bytes.starts_with(b"\x89PNG") {
            return Ok(bytes);
        }
        tokio::task::spawn_blocking(move || encode_png(&image::load_from_memory(&bytes)?))
            .await
            .map_err(|err| ProviderError::Task(err.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_become_messages() {
        let err = api_error(
            429,
            br#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        );
        assert_eq!(
            err.to_string(),
            "provider returned HTTP 429: RESOURCE_EXHAUSTED: Quota exceeded"
        );
        let err = api_error(502, b"<html>bad gateway</html>");
        assert!(err.to_string().contains("bad gateway"));
    }

    #[test]
    fn blocked_and_text_only_answers_have_no_image() {
        let blocked: GenerateResponse =
            serde_json::from_str(r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#).unwrap();
        assert!(first_image(blocked)
            .unwrap_err()
            .to_string()
            .contains("SAFETY"));
        let text: GenerateResponse = serde_json::from_str(
            r#"{"candidates":[{"content":{"parts":[{"text":"I cannot"}]},"finishReason":"STOP"}]}"#,
        )
        .unwrap();
        assert!(first_image(text)
            .unwrap_err()
            .to_string()
            .contains("I cannot"));
    }
}
