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
    /// `Timeout` for a timeout, `ProviderError` for a failure, `None` on success;
    /// `Interrupted` (with status `Failed`) for a variant the producer stopped before it
    /// finished, at shutdown.
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
    /// `Interrupted` when the producer stopped before the run finished; its unfinished
    /// variants then count in `fail_count`, so the counts still add up.
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

/// An accepted call, queued as the caller's own struct: conversion to protobuf and
/// encoding happen on the publisher, off the caller's thread. `StartRun` is boxed
/// because it is four times the size of the others and comes once per run.
pub(crate) enum Item {
    RunStarted(Box<StartRun>),
    VariantStarted(VariantStart),
    VariantResult(VariantResultRecord),
    RunCompleted(CompleteRun),
    Event(EmitEvent),
}

/// A call input: checked by reference on the caller's thread, converted later.
pub(crate) trait Record: Sized {
    /// Enforces the limits; returns the approximate encoded size for the byte bound.
    fn check(&self, limits: &Limits) -> Result<usize, (EmitError, DropReason)>;
    fn into_item(self) -> Item;
}

/// Sums field sizes and enforces the limits. Kept tiny: it runs on the caller's thread.
struct Sizes<'a> {
    limits: &'a Limits,
    total: usize,
}

type Checked = Result<(), (EmitError, DropReason)>;

impl<'a> Sizes<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self { limits, total: 64 }
    }

    fn short(&mut self, field: &'static str, value: &str) -> Checked {
        self.limit(field, value, self.limits.max_field_bytes)
    }

    fn json(&mut self, field: &'static str, value: &str) -> Checked {
        self.limit(field, value, self.limits.max_json_bytes)
    }

    fn required(&mut self, field: &'static str, value: &str) -> Checked {
        if value.is_empty() {
            return Err((EmitError::MissingField(field), DropReason::MissingField));
        }
        self.short(field, value)
    }

    fn limit(&mut self, field: &'static str, value: &str, limit: usize) -> Checked {
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
    fn check(&self, limits: &Limits) -> Result<usize, (EmitError, DropReason)> {
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
        Ok(sizes.total)
    }

    fn into_item(self) -> Item {
        Item::RunStarted(Box::new(self))
    }
}

impl Record for VariantStart {
    fn check(&self, limits: &Limits) -> Result<usize, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.required("run_id", &self.run_id)?;
        sizes.required("variant_id", &self.variant_id)?;
        sizes.short("shop_id", &self.shop_id)?;
        sizes.short("request_id", &self.request_id)?;
        Ok(sizes.total)
    }

    fn into_item(self) -> Item {
        Item::VariantStarted(self)
    }
}

impl Record for VariantResultRecord {
    fn check(&self, limits: &Limits) -> Result<usize, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.required("run_id", &self.run_id)?;
        sizes.required("variant_id", &self.variant_id)?;
        sizes.short("shop_id", &self.shop_id)?;
        sizes.short("request_id", &self.request_id)?;
        sizes.short("final_prompt_hash", &self.final_prompt_hash)?;
        sizes.short(
            "output_image_key",
            self.output_image_key.as_deref().unwrap_or(""),
        )?;
        sizes.short(
            "output_image_hash",
            self.output_image_hash.as_deref().unwrap_or(""),
        )?;
        // Truncated later rather than refused; counted at its capped size.
        let message = self.error_message.as_deref().map_or(0, str::len);
        Ok(sizes.total + message.min(limits.max_error_message_bytes))
    }

    fn into_item(self) -> Item {
        Item::VariantResult(self)
    }
}

impl Record for CompleteRun {
    fn check(&self, limits: &Limits) -> Result<usize, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.required("run_id", &self.run_id)?;
        sizes.short("shop_id", &self.shop_id)?;
        sizes.short("request_id", &self.request_id)?;
        Ok(sizes.total)
    }

    fn into_item(self) -> Item {
        Item::RunCompleted(self)
    }
}

impl Record for EmitEvent {
    fn check(&self, limits: &Limits) -> Result<usize, (EmitError, DropReason)> {
        let mut sizes = Sizes::new(limits);
        sizes.short("shop_id", &self.shop_id)?;
        sizes.short("request_id", &self.request_id)?;
        sizes.short("run_id", &self.run_id)?;
        sizes.json("payload_json", &self.payload_json)?;
        Ok(sizes.total)
    }

    fn into_item(self) -> Item {
        Item::Event(self)
    }
}

/// The envelope fields that are not the call's own: what the publisher stamps.
pub(crate) struct Stamp {
    /// UUIDv7 text whose timestamp is `occurred_at`.
    pub event_id: String,
    /// Unix ms, the producer's clock.
    pub occurred_at: i64,
    /// `{service}-{uuidv7}`.
    pub producer: String,
    /// 1, 2, 3, ... per producer (the emitted count, for `ProducerStats`).
    pub producer_seq: u64,
}

/// The envelope of one body: the publisher's and the fixtures' (`crate::fixture`) only
/// way to build one, so both give the same bytes.
pub(crate) fn envelope(
    stamp: Stamp,
    shop_id: String,
    request_id: String,
    body: Body,
) -> v1::Envelope {
    v1::Envelope {
        event_id: stamp.event_id,
        occurred_at: stamp.occurred_at,
        shop_id,
        request_id,
        producer: stamp.producer,
        producer_seq: stamp.producer_seq,
        body: Some(body),
    }
}

impl Item {
    /// The envelope's shop and request ids and its body (on the publisher).
    pub(crate) fn into_parts(self, limits: &Limits) -> (String, String, Body) {
        match self {
            Item::RunStarted(run) => {
                let run = *run;
                let body = Body::RunStarted(v1::RunStarted {
                    run_id: run.run_id,
                    product_asset_id: run.product_asset_id,
                    room_session_id: run.room_session_id,
                    prompt_pack_version: run.prompt_pack_version,
                    model: run.model,
                    product_image: Some(v1::ImageRef {
                        hash: run.product_image.hash,
                        meta: Some(run.product_image.meta),
                    }),
                    room_image: Some(v1::ImageRef {
                        hash: run.room_image.hash,
                        meta: Some(run.room_image.meta),
                    }),
                    resolved_facts_hash: run.resolved_facts_hash,
                    resolved_facts_json: run.resolved_facts_json,
                    prompt_pack_hash: run.prompt_pack_hash,
                    prompt_pack_json: run.prompt_pack_json,
                    variant_count: run.variant_count,
                });
                (run.shop_id, run.request_id, body)
            }
            Item::VariantStarted(start) => (
                start.shop_id,
                start.request_id,
                Body::VariantStarted(v1::VariantStarted {
                    run_id: start.run_id,
                    variant_id: start.variant_id,
                }),
            ),
            Item::VariantResult(result) => (
                result.shop_id,
                result.request_id,
                Body::VariantResult(v1::VariantResult {
                    run_id: result.run_id,
                    variant_id: result.variant_id,
                    final_prompt_hash: result.final_prompt_hash,
                    status: result.status as i32,
                    latency_ms: result.latency_ms,
                    output_image_key: result.output_image_key.unwrap_or_default(),
                    output_image_hash: result.output_image_hash.unwrap_or_default(),
                    error_code: result.error_code.unwrap_or(ErrorCode::Unspecified) as i32,
                    error_message: truncate_message(
                        result.error_message.unwrap_or_default(),
                        limits.max_error_message_bytes,
                    ),
                }),
            ),
            Item::RunCompleted(complete) => (
                complete.shop_id,
                complete.request_id,
                Body::RunCompleted(v1::RunCompleted {
                    run_id: complete.run_id,
                    status: complete.status as i32,
                    total_duration_ms: complete.total_duration_ms,
                    success_count: complete.success_count,
                    fail_count: complete.fail_count,
                    timeout_count: complete.timeout_count,
                }),
            ),
            Item::Event(event) => (
                event.shop_id,
                event.request_id,
                Body::Event(v1::Event {
                    source: event.source as i32,
                    r#type: event.event_type as i32,
                    payload_json: event.payload_json,
                    run_id: event.run_id,
                }),
            ),
        }
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
        let run = StartRun {
            run_id: "r".into(),
            resolved_facts_json: "{\"a\":\"0123456789\"}".into(),
            ..Default::default()
        };
        let Err((err, reason)) = run.check(&limits) else {
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
