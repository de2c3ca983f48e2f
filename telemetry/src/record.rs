//! What the calls take: one input struct per seed call, with the seed's field names
//! in snake_case, and [`hash_prompt`].
//!
//! Optional values are `Option`s here and empty strings / zero on the wire (proto3).
//! JSON blobs are passed as text (the caller usually has it already, to hash it); the
//! collector validates them and dead-letters an event whose blob is not JSON.

use sha2::{Digest, Sha256};
use telemetry_proto::v1::{self, envelope::Body};

use crate::config::Limits;
use crate::error::EmitError;
use crate::ledger::DropReason;
use crate::{ErrorCode, EventSource, EventType, ImageMeta, RunStatus, VariantStatus};

/// sha256 of `text`, lowercase hex: the seed's `hashPrompt`, used for prompts, resolved
/// facts and prompt packs so equal inputs can be found without storing them twice.
pub fn hash_prompt(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// An input image: sha256 of its bytes and its shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageInfo {
    /// sha256 of the image bytes, lowercase hex.
    pub hash: String,
    /// Width, height, format and size.
    pub meta: ImageMeta,
}

/// The seed's `startRun`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StartRun {
    /// Required. UUIDv7 text recommended (time-ordered keys keep inserts fast).
    pub run_id: String,
    pub shop_id: String,
    pub request_id: String,
    pub product_asset_id: String,
    pub room_session_id: String,
    pub prompt_pack_version: String,
    pub model: String,
    pub product_image: ImageInfo,
    pub room_image: ImageInfo,
    pub resolved_facts_hash: String,
    /// JSON object as text.
    pub resolved_facts_json: String,
    pub prompt_pack_hash: String,
    /// JSON object as text.
    pub prompt_pack_json: String,
    /// Variants the run will render (0 = unknown).
    pub variant_count: u32,
}

/// The seed's `recordVariantStart`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VariantStart {
    /// Required.
    pub run_id: String,
    /// Required.
    pub variant_id: String,
    pub request_id: String,
    pub shop_id: String,
}

/// The seed's `recordVariantResult` (`renderRunId` is `run_id` here).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantResultRecord {
    /// Required.
    pub run_id: String,
    /// Required.
    pub variant_id: String,
    pub request_id: String,
    pub shop_id: String,
    /// `hash_prompt` of the prompt actually sent to the model.
    pub final_prompt_hash: String,
    pub status: VariantStatus,
    pub latency_ms: u64,
    pub output_image_key: Option<String>,
    pub output_image_hash: Option<String>,
    /// `Timeout` for a timeout, `ProviderError` for a failure, `None` on success.
    pub error_code: Option<ErrorCode>,
    /// Truncated to [`Limits::max_error_message_bytes`].
    pub error_message: Option<String>,
}

/// The seed's `completeRun`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompleteRun {
    /// Required.
    pub run_id: String,
    pub request_id: String,
    pub shop_id: String,
    pub status: RunStatus,
    pub total_duration_ms: u64,
    pub success_count: u32,
    pub fail_count: u32,
    pub timeout_count: u32,
}

/// The seed's `emit`: a typed event with a JSON payload.
#[derive(Debug, Clone, PartialEq)]
pub struct EmitEvent {
    pub shop_id: String,
    pub request_id: String,
    /// The run the event belongs to, or empty.
    pub run_id: String,
    pub source: EventSource,
    pub event_type: EventType,
    /// JSON object as text (`"{}"` when there is nothing to say).
    pub payload_json: String,
}

/// An accepted call, checked and ready to queue.
pub(crate) struct Checked {
    pub shop_id: String,
    pub request_id: String,
    pub body: Body,
    /// Approximate encoded size, for the queue's byte bound.
    pub bytes: usize,
}

/// A call input that can become an envelope body.
pub(crate) trait Record {
    fn check(self, limits: &Limits) -> Result<Checked, (EmitError, DropReason)>;
}

/// Sums field sizes and enforces the limits. Kept tiny: it runs on the caller's thread.
struct Sizes<'a> {
    limits: &'a Limits,
    total: usize,
}

impl<'a> Sizes<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self { limits, total: 64 }
    }

    fn short(&mut self, field: &'static str, value: &str) -> Result<(), (EmitError, DropReason)> {
        self.limit(field, value, self.limits.max_field_bytes)
    }

    fn json(&mut self, field: &'static str, value: &str) -> Result<(), (EmitError, DropReason)> {
        self.limit(field, value, self.limits.max_json_bytes)
    }

    fn required(
        &mut self,
        field: &'static str,
        value: &str,
    ) -> Result<(), (EmitError, DropReason)> {
        if value.is_empty() {
            return Err((EmitError::MissingField(field), DropReason::MissingField));
        }
        self.short(field, value)
    }

    fn limit(
        &mut self,
        field: &'static str,
        value: &str,
        limit: usize,
    ) -> Result<(), (EmitError, DropReason)> {
        if value.len() > limit {
            return Err((
                EmitError::TooLarge {
                    field,
                    len: value.len(),
                    limit,
                },
                DropReason::PayloadTooLarge,
            ));
        }
        self.total += value.len();
        Ok(())
    }
}

/// Cuts `message` to at most `limit` bytes on a char boundary, marking the cut.
fn truncate_message(mut message: String, limit: usize) -> String {
    const MARK: &str = "…[truncated]";
    if message.len() <= limit {
        return message;
    }
    let mut end = limit.saturating_sub(MARK.len());
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(MARK);
    message
}

impl Record for StartRun {
    fn check(self, limits: &Limits) -> Result<Checked, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.required("run_id", &self.run_id)?;
        for (field, value) in [
            ("shop_id", &self.shop_id),
            ("request_id", &self.request_id),
            ("product_asset_id", &self.product_asset_id),
            ("room_session_id", &self.room_session_id),
            ("prompt_pack_version", &self.prompt_pack_version),
            ("model", &self.model),
            ("product_image.hash", &self.product_image.hash),
            ("product_image.meta.format", &self.product_image.meta.format),
            ("room_image.hash", &self.room_image.hash),
            ("room_image.meta.format", &self.room_image.meta.format),
            ("resolved_facts_hash", &self.resolved_facts_hash),
            ("prompt_pack_hash", &self.prompt_pack_hash),
        ] {
            sizes.short(field, value)?;
        }
        sizes.json("resolved_facts_json", &self.resolved_facts_json)?;
        sizes.json("prompt_pack_json", &self.prompt_pack_json)?;
        let body = Body::RunStarted(v1::RunStarted {
            run_id: self.run_id,
            product_asset_id: self.product_asset_id,
            room_session_id: self.room_session_id,
            prompt_pack_version: self.prompt_pack_version,
            model: self.model,
            product_image: Some(v1::ImageRef {
                hash: self.product_image.hash,
                meta: Some(self.product_image.meta),
            }),
            room_image: Some(v1::ImageRef {
                hash: self.room_image.hash,
                meta: Some(self.room_image.meta),
            }),
            resolved_facts_hash: self.resolved_facts_hash,
            resolved_facts_json: self.resolved_facts_json,
            prompt_pack_hash: self.prompt_pack_hash,
            prompt_pack_json: self.prompt_pack_json,
            variant_count: self.variant_count,
        });
        Ok(Checked {
            shop_id: self.shop_id,
            request_id: self.request_id,
            body,
            bytes: sizes.total,
        })
    }
}

impl Record for VariantStart {
    fn check(self, limits: &Limits) -> Result<Checked, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.required("run_id", &self.run_id)?;
        sizes.required("variant_id", &self.variant_id)?;
        sizes.short("shop_id", &self.shop_id)?;
        sizes.short("request_id", &self.request_id)?;
        Ok(Checked {
            shop_id: self.shop_id,
            request_id: self.request_id,
            body: Body::VariantStarted(v1::VariantStarted {
                run_id: self.run_id,
                variant_id: self.variant_id,
            }),
            bytes: sizes.total,
        })
    }
}

impl Record for VariantResultRecord {
    fn check(self, limits: &Limits) -> Result<Checked, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.required("run_id", &self.run_id)?;
        sizes.required("variant_id", &self.variant_id)?;
        let output_image_key = self.output_image_key.unwrap_or_default();
        let output_image_hash = self.output_image_hash.unwrap_or_default();
        for (field, value) in [
            ("shop_id", &self.shop_id),
            ("request_id", &self.request_id),
            ("final_prompt_hash", &self.final_prompt_hash),
            ("output_image_key", &output_image_key),
            ("output_image_hash", &output_image_hash),
        ] {
            sizes.short(field, value)?;
        }
        let error_message = truncate_message(
            self.error_message.unwrap_or_default(),
            limits.max_error_message_bytes,
        );
        sizes.total += error_message.len();
        Ok(Checked {
            shop_id: self.shop_id,
            request_id: self.request_id,
            body: Body::VariantResult(v1::VariantResult {
                run_id: self.run_id,
                variant_id: self.variant_id,
                final_prompt_hash: self.final_prompt_hash,
                status: self.status as i32,
                latency_ms: self.latency_ms,
                output_image_key,
                output_image_hash,
                error_code: self.error_code.unwrap_or(ErrorCode::Unspecified) as i32,
                error_message,
            }),
            bytes: sizes.total,
        })
    }
}

impl Record for CompleteRun {
    fn check(self, limits: &Limits) -> Result<Checked, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.required("run_id", &self.run_id)?;
        sizes.short("shop_id", &self.shop_id)?;
        sizes.short("request_id", &self.request_id)?;
        Ok(Checked {
            shop_id: self.shop_id,
            request_id: self.request_id,
            body: Body::RunCompleted(v1::RunCompleted {
                run_id: self.run_id,
                status: self.status as i32,
                total_duration_ms: self.total_duration_ms,
                success_count: self.success_count,
                fail_count: self.fail_count,
                timeout_count: self.timeout_count,
            }),
            bytes: sizes.total,
        })
    }
}

impl Record for EmitEvent {
    fn check(self, limits: &Limits) -> Result<Checked, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.short("shop_id", &self.shop_id)?;
        sizes.short("request_id", &self.request_id)?;
        sizes.short("run_id", &self.run_id)?;
        sizes.json("payload_json", &self.payload_json)?;
        Ok(Checked {
            shop_id: self.shop_id,
            request_id: self.request_id,
            body: Body::Event(v1::Event {
                source: self.source as i32,
                r#type: self.event_type as i32,
                payload_json: self.payload_json,
                run_id: self.run_id,
            }),
            bytes: sizes.total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_prompt_is_lowercase_hex_sha256() {
        assert_eq!(
            hash_prompt("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn long_error_messages_are_truncated_on_a_char_boundary() {
        let message = "é".repeat(100);
        let cut = truncate_message(message, 51);
        assert!(cut.len() <= 51, "{}", cut.len());
        assert!(cut.ends_with("…[truncated]"));
        assert_eq!(truncate_message("short".into(), 51), "short");
    }

    #[test]
    fn oversized_json_is_refused_with_the_field_named() {
        let limits = Limits {
            max_json_bytes: 8,
            ..Limits::default()
        };
        let Err((err, reason)) = (StartRun {
            run_id: "r".into(),
            resolved_facts_json: "{\"a\":\"0123456789\"}".into(),
            ..Default::default()
        })
        .check(&limits) else {
            panic!("accepted an oversized blob");
        };
        assert_eq!(reason, DropReason::PayloadTooLarge);
        assert_eq!(
            err,
            EmitError::TooLarge {
                field: "resolved_facts_json",
                len: 18,
                limit: 8
            }
        );
    }

    #[test]
    fn a_missing_run_id_is_refused() {
        let Err((err, reason)) = VariantStart::default().check(&Limits::default()) else {
            panic!("accepted an empty run id");
        };
        assert_eq!(err, EmitError::MissingField("run_id"));
        assert_eq!(reason, DropReason::MissingField);
    }
}
