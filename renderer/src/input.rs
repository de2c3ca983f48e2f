//! Parsing the render request at the edge: the JSON body becomes a checked
//! [`RenderInput`] once, or an [`InputError`] that names the problem (sent back as the
//! 400's reason and in the SF_RENDER_REJECTED event).
//!
//! The body speaks the storefront's camelCase (`productId`, `roomSessionId`, ...);
//! snake_case aliases are accepted too.

use std::io::Cursor;
use std::sync::Arc;

use base64::Engine as _;
use image::{ColorType, DynamicImage, ImageDecoder as _, ImageError, ImageFormat, ImageReader};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::store::valid_id;

/// Longest id (product, asset, room session, request, prompt pack version) accepted:
/// ids travel in every telemetry event and must stay well under its field limit.
pub const MAX_ID_BYTES: usize = 256;
/// Largest resolved-facts or prompt-pack JSON accepted. It equals the telemetry SDK's
/// JSON limit, so an accepted request is never dropped by the SDK for its size.
pub const MAX_JSON_BYTES: usize = telemetry::config::DEFAULT_MAX_JSON_BYTES;
/// Longest variant id: it becomes a file name in the image store.
pub const MAX_VARIANT_ID_BYTES: usize = 64;

/// Most bytes of a request's own text that go back out in an error message or a
/// rejection event, after escaping: a hostile value cannot make either large (a
/// rejection event over the SDK's limits would be dropped, not recorded).
pub const MAX_ECHOED_BYTES: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, with `…` when cut.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// `value` quoted and escaped as Rust's `{:?}` does (control characters become escapes),
/// cut at [`MAX_ECHOED_BYTES`] with `…`: how the request's own values appear in errors.
pub fn echo(value: &str) -> String {
    // Escaping at most quadruples a byte: no need to escape more than the bound's worth.
    let mut end = value.len().min(MAX_ECHOED_BYTES + 1);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let quoted = format!("{:?}", &value[..end]);
    let cut = end < value.len();
    match truncate(quoted, MAX_ECHOED_BYTES) {
        text if cut && !text.ends_with('…') => text + "…",
        text => text,
    }
}

/// Why a request was refused. `reason()` is the stable code, `Display` the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The body is not JSON of the expected shape (the parser's message, which may
    /// quote the body, cut at [`MAX_ECHOED_BYTES`]).
    #[error("malformed JSON body: {0}")]
    MalformedJson(String),
    /// A required field is missing or empty.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// An id contains a control character (it would travel into logs, events and the
    /// monitor as sent).
    #[error("field {0} contains a control character")]
    ControlCharacter(&'static str),
    /// An id is too long.
    #[error("field {field} is longer than {limit} bytes")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its limit.
        limit: usize,
    },
    /// An image field is not base64.
    #[error("{field} is not valid base64: {reason}")]
    InvalidBase64 {
        /// `productImage` or `roomImage`.
        field: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The image is not PNG, JPEG or WebP, or does not decode.
    #[error("{field} could not be decoded: {reason}")]
    UndecodableImage {
        /// `productImage` or `roomImage`.
        field: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The image file is over [`Limits::max_image_bytes`].
    #[error("{field} is {bytes} bytes, over the {limit}-byte limit")]
    ImageTooLarge {
        /// `productImage` or `roomImage`.
        field: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The image is over [`Limits::max_image_pixels`].
    #[error("{field} is {width}x{height} pixels, over the {limit}-pixel limit")]
    TooManyPixels {
        /// `productImage` or `roomImage`.
        field: &'static str,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The limit.
        limit: u64,
    },
    /// The image would take more than [`Limits::max_decoded_image_bytes`] once decoded.
    #[error(
        "{field} is {width}x{height} pixels of {color}, {bytes} bytes decoded, \
         over the {limit}-byte limit"
    )]
    DecodedImageTooLarge {
        /// `productImage` or `roomImage`.
        field: &'static str,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The decoder's colour type (`Rgba16`, ...).
        color: String,
        /// Bytes the decoded pixels would take.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// A JSON blob is over [`MAX_JSON_BYTES`] or not an object.
    #[error("{field} must be a JSON object of at most {limit} bytes")]
    InvalidJsonBlob {
        /// `resolvedFacts` or `promptPack`.
        field: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The prompt pack has no variants.
    #[error("prompt pack has no variants")]
    NoVariants,
    /// The prompt pack has more than [`Limits::max_variants`] variants.
    #[error("prompt pack has {count} variants, more than the limit of {limit}")]
    TooManyVariants {
        /// Variants sent.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A variant id is empty, too long, not `[A-Za-z0-9._-]`, or repeated (the id as
    /// [`echo`] shows it).
    #[error("invalid variant id {0} (1-64 of A-Z a-z 0-9 . _ -, unique, not starting with '.')")]
    InvalidVariantId(String),
    /// A variant has an empty prompt.
    #[error("variant {0:?} has an empty prompt")]
    EmptyPrompt(String),
}

impl InputError {
    /// A stable, machine-readable code for the reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::ControlCharacter(_) => "control_character",
            Self::MissingField(_) => "missing_field",
            Self::FieldTooLong { .. } => "field_too_long",
            Self::InvalidBase64 { .. } => "invalid_base64",
            Self::UndecodableImage { .. } => "undecodable_image",
            Self::ImageTooLarge { .. } => "image_too_large",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::DecodedImageTooLarge { .. } => "decoded_image_too_large",
            Self::InvalidJsonBlob { .. } => "invalid_json_blob",
            Self::NoVariants => "no_variants",
            Self::TooManyVariants { .. } => "too_many_variants",
            Self::InvalidVariantId(_) => "invalid_variant_id",
            Self::EmptyPrompt(_) => "empty_prompt",
        }
    }
}

/// One variant of the prompt pack.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Variant {
    /// Id, unique in the pack; becomes part of the image key.
    pub id: String,
    /// The variant's prompt.
    pub prompt: String,
}

/// The prompt pack's shape (the JSON blob itself is kept as sent, for its hash).
#[derive(Debug, Clone, Deserialize)]
struct PromptPack {
    #[serde(default)]
    version: serde_json::Value,
    #[serde(default)]
    variants: Vec<Variant>,
}

/// The body as sent, before checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderBody {
    /// The storefront's product id.
    #[serde(default, alias = "product_id")]
    pub product_id: Option<String>,
    /// The product image asset id (defaults to the product id).
    #[serde(default, alias = "product_asset_id")]
    pub product_asset_id: Option<String>,
    /// The shopper's room session.
    #[serde(default, alias = "room_session_id")]
    pub room_session_id: Option<String>,
    /// Base64 product photo.
    #[serde(default, alias = "product_image")]
    pub product_image: Option<String>,
    /// Base64 room photo.
    #[serde(default, alias = "room_image")]
    pub room_image: Option<String>,
    /// Facts resolved about the product (dimensions, material, ...).
    #[serde(default, alias = "resolved_facts")]
    pub resolved_facts: Option<serde_json::Value>,
    /// `{version, variants: [{id, prompt}]}`.
    #[serde(default, alias = "prompt_pack")]
    pub prompt_pack: Option<serde_json::Value>,
    /// Caller's request id.
    #[serde(default, alias = "request_id")]
    pub request_id: Option<String>,
}

impl RenderBody {
    /// Parses the raw body.
    pub fn parse(bytes: &[u8]) -> Result<Self, InputError> {
        serde_json::from_slice(bytes).map_err(malformed)
    }
}

/// A decoded input image.
#[derive(Debug, Clone)]
pub struct InputImage {
    /// The bytes as sent.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`, lowercase hex.
    pub sha256: String,
    /// PNG, JPEG or WebP.
    pub format: ImageFormat,
    /// The decoded pixels, 8 bits a channel.
    pub image: DynamicImage,
}

impl InputImage {
    /// `png`, `jpeg` or `webp`.
    pub fn format_name(&self) -> &'static str {
        match self.format {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::WebP => "webp",
            _ => "unknown",
        }
    }

    /// The MIME type, for providers that send the image on.
    pub fn mime_type(&self) -> &'static str {
        self.format.to_mime_type()
    }

    /// Width, height, format and size, as telemetry reports them.
    pub fn meta(&self) -> telemetry::ImageMeta {
        telemetry::ImageMeta {
            width: self.image.width(),
            height: self.image.height(),
            format: self.format_name().to_owned(),
            bytes: self.bytes.len() as u64,
        }
    }

    /// Decodes base64 `data` under `limits`: the file's size, its pixels, and the bytes its
    /// pixels take decoded, each checked before the next step allocates. Images of more
    /// than 8 bits a channel are converted to 8 bits at once. CPU-heavy: call off the
    /// async threads.
    pub fn decode(field: &'static str, data: &str, limits: &Limits) -> Result<Self, InputError> {
        // Base64 is 4/3 of the bytes: refuse before decoding what is surely too large.
        if data.len() / 4 * 3 > limits.max_image_bytes + 3 {
            return Err(InputError::ImageTooLarge {
                field,
                bytes: data.len() / 4 * 3,
                limit: limits.max_image_bytes,
            });
        }
        // Accept data URLs (`data:image/png;base64,...`), which browsers produce.
        let data = match data.split_once(";base64,") {
            Some((prefix, rest)) if prefix.starts_with("data:") => rest,
            _ => data,
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|err| InputError::InvalidBase64 {
                field,
                reason: err.to_string(),
            })?;
        if bytes.len() > limits.max_image_bytes {
            return Err(InputError::ImageTooLarge {
                field,
                bytes: bytes.len(),
                limit: limits.max_image_bytes,
            });
        }
        let undecodable = |reason: String| InputError::UndecodableImage {
            field,
            reason: truncate(reason, MAX_ECHOED_BYTES),
        };
        let format = image::guess_format(&bytes).map_err(|err| undecodable(err.to_string()))?;
        if !matches!(
            format,
            ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP
        ) {
            return Err(undecodable(format!(
                "{format:?} is not supported (PNG, JPEG or WebP)"
            )));
        }
        let mut reader = ImageReader::with_format(Cursor::new(&bytes[..]), format);
        // The decoder's own buffers stay under the same budget as the pixels.
        let mut decoder_limits = image::Limits::default();
        decoder_limits.max_alloc = Some(limits.max_decoded_image_bytes);
        reader.limits(decoder_limits);
        // Reads the header only: nothing of the image's size is allocated yet.
        let decoder = reader
            .into_decoder()
            .map_err(|err| undecodable(err.to_string()))?;
        let (width, height) = decoder.dimensions();
        if u64::from(width) * u64::from(height) > limits.max_image_pixels {
            return Err(InputError::TooManyPixels {
                field,
                width,
                height,
                limit: limits.max_image_pixels,
            });
        }
        let decoded_bytes = decoder.total_bytes();
        if decoded_bytes > limits.max_decoded_image_bytes {
            return Err(InputError::DecodedImageTooLarge {
                field,
                width,
                height,
                color: format!("{:?}", decoder.color_type()),
                bytes: decoded_bytes,
                limit: limits.max_decoded_image_bytes,
            });
        }
        let image = DynamicImage::from_decoder(decoder).map_err(|err| match err {
            ImageError::Limits(limit) => undecodable(format!(
                "the decoder needs more memory than allowed: {limit}"
            )),
            other => undecodable(other.to_string()),
        })?;
        let image = to_8_bit(image);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(Self {
            bytes,
            sha256,
            format,
            image,
        })
    }
}

/// `image` with 8 bits a channel: 16-bit and float images are converted (and the wide
/// copy freed) right after decoding, so a render holds at most 4 bytes a pixel, and the
/// providers' conversions to RGBA8 copy no more than that.
fn to_8_bit(image: DynamicImage) -> DynamicImage {
    match image.color() {
        ColorType::L16 => DynamicImage::ImageLuma8(image.to_luma8()),
        ColorType::La16 => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
        ColorType::Rgb16 | ColorType::Rgb32F => DynamicImage::ImageRgb8(image.to_rgb8()),
        ColorType::Rgba16 | ColorType::Rgba32F => DynamicImage::ImageRgba8(image.to_rgba8()),
        _ => image,
    }
}

/// A checked render request.
#[derive(Debug, Clone)]
pub struct RenderInput {
    /// Storefront product id.
    pub product_id: String,
    /// Product image asset id.
    pub product_asset_id: String,
    /// Room session id.
    pub room_session_id: String,
    /// Product photo.
    pub product_image: Arc<InputImage>,
    /// Room photo.
    pub room_image: Arc<InputImage>,
    /// The resolved facts, compact JSON (hashed as sent on).
    pub resolved_facts_json: String,
    /// The prompt pack, compact JSON.
    pub prompt_pack_json: String,
    /// The pack's version (a string or number in the JSON, as text).
    pub prompt_pack_version: String,
    /// The variants, in pack order.
    pub variants: Vec<Variant>,
}

/// A JSON error as [`InputError::MalformedJson`]: serde quotes strings it did not
/// expect, whole, so its message is cut.
fn malformed(err: impl std::fmt::Display) -> InputError {
    InputError::MalformedJson(truncate(err.to_string(), MAX_ECHOED_BYTES))
}

/// Refuses control characters in the id `field`.
fn no_control_characters(field: &'static str, value: &str) -> Result<(), InputError> {
    if value.chars().any(char::is_control) {
        return Err(InputError::ControlCharacter(field));
    }
    Ok(())
}

fn id_field(
    field: &'static str,
    value: Option<&String>,
    required: bool,
) -> Result<String, InputError> {
    let value = value.map(|v| v.trim()).unwrap_or_default();
    if value.is_empty() && required {
        return Err(InputError::MissingField(field));
    }
    no_control_characters(field, value)?;
    if value.len() > MAX_ID_BYTES {
        return Err(InputError::FieldTooLong {
            field,
            limit: MAX_ID_BYTES,
        });
    }
    Ok(value.to_owned())
}

fn json_blob(field: &'static str, value: &serde_json::Value) -> Result<String, InputError> {
    let text = serde_json::to_string(value).expect("a JSON value serializes");
    if !value.is_object() || text.len() > MAX_JSON_BYTES {
        return Err(InputError::InvalidJsonBlob {
            field,
            limit: MAX_JSON_BYTES,
        });
    }
    Ok(text)
}

/// The ids the request names, checked: enough to emit SF_RENDER_REQUESTED before the
/// (slow) image checks. The body's `requestId` is checked here too (an unusable one is
/// otherwise replaced, see the HTTP handler, but a control character is refused).
pub fn ids(body: &RenderBody) -> Result<(String, String), InputError> {
    if let Some(request_id) = &body.request_id {
        no_control_characters("requestId", request_id)?;
    }
    Ok((
        id_field("productId", body.product_id.as_ref(), true)?,
        id_field("roomSessionId", body.room_session_id.as_ref(), true)?,
    ))
}

/// Checks everything but the images (cheap, so done first).
fn check_pack(
    body: &RenderBody,
    limits: &Limits,
) -> Result<(String, String, Vec<Variant>), InputError> {
    let pack_value = body
        .prompt_pack
        .as_ref()
        .ok_or(InputError::MissingField("promptPack"))?;
    let prompt_pack_json = json_blob("promptPack", pack_value)?;
    let pack: PromptPack = serde_json::from_value(pack_value.clone())
        .map_err(|err| malformed(format!("promptPack: {err}")))?;
    let version = match pack.version {
        serde_json::Value::String(text) => text,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let version = id_field("promptPack.version", Some(&version), true)?;
    if pack.variants.is_empty() {
        return Err(InputError::NoVariants);
    }
    if pack.variants.len() > limits.max_variants {
        return Err(InputError::TooManyVariants {
            count: pack.variants.len(),
            limit: limits.max_variants,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for variant in &pack.variants {
        no_control_characters("promptPack.variants.id", &variant.id)?;
        if !valid_id(&variant.id)
            || variant.id.len() > MAX_VARIANT_ID_BYTES
            || !seen.insert(variant.id.as_str())
        {
            return Err(InputError::InvalidVariantId(echo(&variant.id)));
        }
        if variant.prompt.trim().is_empty() {
            return Err(InputError::EmptyPrompt(variant.id.clone()));
        }
    }
    Ok((prompt_pack_json, version, pack.variants))
}

/// Checks the whole body and decodes both images. CPU-heavy: call off the async
/// threads.
pub fn check(body: &RenderBody, limits: &Limits) -> Result<RenderInput, InputError> {
    let (product_id, room_session_id) = ids(body)?;
    let product_asset_id = match id_field("productAssetId", body.product_asset_id.as_ref(), false)?
    {
        id if id.is_empty() => product_id.clone(),
        id => id,
    };
    let resolved_facts_json = match &body.resolved_facts {
        Some(value) => json_blob("resolvedFacts", value)?,
        None => "{}".to_owned(),
    };
    let (prompt_pack_json, prompt_pack_version, variants) = check_pack(body, limits)?;
    let image = |field, value: Option<&String>| {
        let data = value
            .filter(|v| !v.is_empty())
            .ok_or(InputError::MissingField(field))?;
        InputImage::decode(field, data, limits).map(Arc::new)
    };
    let product_image = image("productImage", body.product_image.as_ref())?;
    let room_image = image("roomImage", body.room_image.as_ref())?;
    Ok(RenderInput {
        product_id,
        product_asset_id,
        room_session_id,
        product_image,
        room_image,
        resolved_facts_json,
        prompt_pack_json,
        prompt_pack_version,
        variants,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> String {
        let image = DynamicImage::new_rgb8(width, height);
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    }

    fn body(variants: usize) -> RenderBody {
        let variants: Vec<_> = (0..variants)
            .map(|i| serde_json::json!({"id": format!("v{i}"), "prompt": "place it"}))
            .collect();
        RenderBody::parse(
            serde_json::json!({
                "productId": "p1",
                "roomSessionId": "room-1",
                "productImage": png(4, 4),
                "roomImage": png(16, 8),
                "resolvedFacts": {"width_cm": 80},
                "promptPack": {"version": "v1", "variants": variants},
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn echoed_values_are_escaped_and_bounded() {
        assert_eq!(echo("v1"), "\"v1\"");
        assert_eq!(echo("a\u{1}b"), "\"a\\u{1}b\"");
        for long in ["\"".repeat(32_000), "é".repeat(1000), "x".repeat(300)] {
            let echoed = echo(&long);
            assert!(
                echoed.len() <= MAX_ECHOED_BYTES + '…'.len_utf8(),
                "{echoed}"
            );
            assert!(echoed.ends_with('…'), "{echoed}");
        }
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate("aé".into(), 2), "a…");
    }

    #[test]
    fn a_good_body_checks_out() {
        let input = check(&body(2), &Limits::default()).unwrap();
        assert_eq!(input.product_asset_id, "p1");
        assert_eq!(input.room_image.meta().width, 16);
        assert_eq!(input.room_image.meta().format, "png");
        assert_eq!(input.prompt_pack_version, "v1");
        assert_eq!(input.variants.len(), 2);
    }

    fn png_16_bit(width: u32, height: u32) -> String {
        let image = DynamicImage::ImageRgba16(image::ImageBuffer::new(width, height));
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    }

    #[test]
    fn decoded_bytes_are_bounded_and_wide_images_become_8_bit() {
        // 100x100 RGBA16 is 80,000 bytes decoded, RGBA8 40,000.
        let limits = Limits {
            max_decoded_image_bytes: 80_000,
            ..Limits::default()
        };
        let image = InputImage::decode("roomImage", &png_16_bit(100, 100), &limits).unwrap();
        assert_eq!(image.image.color(), ColorType::Rgba8);
        assert_eq!((image.meta().width, image.meta().height), (100, 100));

        let err = InputImage::decode("roomImage", &png_16_bit(100, 101), &limits).unwrap_err();
        assert_eq!(err.reason(), "decoded_image_too_large");
        assert_eq!(
            err.to_string(),
            "roomImage is 100x101 pixels of Rgba16, 80800 bytes decoded, \
             over the 80000-byte limit"
        );
        // An 8-bit image of the same pixels fits.
        let rgba8 = {
            let image = DynamicImage::new_rgba8(100, 101);
            let mut out = Cursor::new(Vec::new());
            image.write_to(&mut out, ImageFormat::Png).unwrap();
            base64::engine::general_purpose::STANDARD.encode(out.into_inner())
        };
        assert!(InputImage::decode("roomImage", &rgba8, &limits).is_ok());
    }

    #[test]
    fn each_bad_input_has_its_reason() {
        let limits = Limits {
            max_variants: 3,
            max_image_pixels: 100,
            max_image_bytes: 4096,
            ..Limits::default()
        };
        let mut no_variants = body(0);
        assert_eq!(
            check(&no_variants, &limits).unwrap_err().reason(),
            "no_variants"
        );
        assert_eq!(
            check(&body(4), &limits).unwrap_err().reason(),
            "too_many_variants"
        );
        no_variants = body(1);
        no_variants.room_image = Some(png(20, 20));
        assert_eq!(
            check(&no_variants, &limits).unwrap_err().reason(),
            "too_many_pixels"
        );
        let mut bad = body(1);
        bad.product_image = Some("not base64!".into());
        assert_eq!(check(&bad, &limits).unwrap_err().reason(), "invalid_base64");
        bad.product_image = Some(base64::engine::general_purpose::STANDARD.encode(b"GIF89a...."));
        assert_eq!(
            check(&bad, &limits).unwrap_err().reason(),
            "undecodable_image"
        );
        bad.product_image = Some("A".repeat(8000));
        assert_eq!(
            check(&bad, &limits).unwrap_err().reason(),
            "image_too_large"
        );
        bad.product_image = None;
        assert_eq!(
            check(&bad, &limits).unwrap_err(),
            InputError::MissingField("productImage")
        );
        let mut bad = body(1);
        bad.room_session_id = None;
        assert_eq!(
            check(&bad, &limits).unwrap_err(),
            InputError::MissingField("roomSessionId")
        );
        assert_eq!(
            RenderBody::parse(b"{").unwrap_err().reason(),
            "malformed_json"
        );
    }
}
