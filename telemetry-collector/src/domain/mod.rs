//! The parse edge: a message from the stream becomes a validated [`Fact`] once, or a
//! [`Rejection`] that says why it is a dead letter. Nothing past this module sees raw
//! protobuf or unchecked JSON.
//!
//! Choices written down here:
//! - `event_id` must be a UUID; it is stored in canonical lowercase text so comparing
//!   two ids as text orders them like the UUIDv7 bytes (the projection's tie-break).
//! - A JSON blob (`resolved_facts_json`, `prompt_pack_json`, `payload_json`) that is
//!   empty is stored as NULL; any other text must parse as JSON or the message is a
//!   dead letter.
//! - Enum values are stored as lowercase names without their prefix (`success`,
//!   `provider_error`); a value this build does not know is kept as `unknown(<n>)`,
//!   never dead-lettered.

mod payload;

use bytes::Bytes;
use prost::Message as _;
use telemetry_proto::v1::{self, envelope::Body as ProtoBody};
use telemetry_proto::{BodyKind, Subjects};

/// Why a message is a dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The bytes are not a `telemetry.v1.Envelope`.
    #[error("undecodable envelope: {0}")]
    Undecodable(String),
    /// The envelope has no body.
    #[error("envelope has no body")]
    NoBody,
    /// A required id is empty.
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    /// `event_id` is not a UUID.
    #[error("event_id {0:?} is not a UUID")]
    BadEventId(String),
    /// A JSON blob is not JSON.
    #[error("field `{field}` is not JSON: {error}")]
    NotJson {
        /// The blob's field name.
        field: &'static str,
        /// The parser's complaint.
        error: String,
    },
    /// The database refused the envelope's rows for good (a data error such as a value
    /// too large for an index, not an outage); isolated from its batch so the rest is
    /// stored (`store::isolate`).
    #[error("the database refused it: {0}")]
    Database(String),
    /// The subject is not one of this prefix's subjects.
    #[error("unknown subject {0:?}")]
    UnknownSubject(String),
    /// The subject names another body kind than the envelope carries.
    #[error("subject {subject:?} carries {expected} but the body is {actual}")]
    SubjectMismatch {
        /// The subject.
        subject: String,
        /// Kind named by the subject.
        expected: &'static str,
        /// Kind of the body.
        actual: &'static str,
    },
}

/// Where a message came from on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// NATS subject.
    pub subject: String,
    /// Stream sequence.
    pub stream_seq: u64,
}

/// A message that could not be used, kept with its bytes for inspection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it came from.
    pub origin: Origin,
    /// Why it was refused.
    pub reason: Rejection,
    /// The message bytes as received.
    pub raw: Bytes,
}

/// Envelope fields common to every fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Canonical lowercase UUID text.
    pub event_id: String,
    /// Unix ms, producer's clock.
    pub occurred_at: i64,
    /// Shop domain.
    pub shop_id: String,
    /// Storefront request id.
    pub request_id: String,
    /// Producer instance id.
    pub producer: String,
    /// Per-producer sequence.
    pub producer_seq: i64,
}

/// Width, height, format and size of an input image (all from the wire, unchecked
/// beyond type).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMeta {
    /// Pixels.
    pub width: i64,
    /// Pixels.
    pub height: i64,
    /// `png`, `jpeg`, ...
    pub format: String,
    /// Size in bytes.
    pub bytes: i64,
}

/// An input image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRef {
    /// sha256 hex of the bytes.
    pub hash: String,
    /// Absent when the producer did not send it.
    pub meta: Option<ImageMeta>,
}

/// A run started (`RunStarted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    pub run_id: String,
    pub product_asset_id: String,
    pub room_session_id: String,
    pub prompt_pack_version: String,
    pub model: String,
    pub product_image: ImageRef,
    pub room_image: ImageRef,
    pub resolved_facts_hash: String,
    /// Valid JSON text, or `None` when empty.
    pub resolved_facts_json: Option<String>,
    pub prompt_pack_hash: String,
    /// Valid JSON text, or `None` when empty.
    pub prompt_pack_json: Option<String>,
    pub variant_count: i64,
}

/// A variant started (`VariantStarted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantStart {
    pub run_id: String,
    pub variant_id: String,
}

/// A variant finished (`VariantResult`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantOutcome {
    pub run_id: String,
    pub variant_id: String,
    pub final_prompt_hash: String,
    /// `success`, `failed`, `timeout`, `unspecified` or `unknown(n)`.
    pub status: String,
    pub latency_ms: i64,
    pub output_image_key: String,
    pub output_image_hash: String,
    /// `timeout`, `provider_error`, ..., `unspecified` or `unknown(n)`.
    pub error_code: String,
    pub error_message: String,
}

/// A run finished (`RunCompleted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run_id: String,
    /// `complete`, `partial`, `failed`, `unspecified` or `unknown(n)`.
    pub status: String,
    pub total_duration_ms: i64,
    pub success_count: i64,
    pub fail_count: i64,
    pub timeout_count: i64,
}

/// A generic typed event (`Event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEvent {
    /// `app_proxy`, `renderer`, ... or `unknown(n)`.
    pub source: String,
    /// `sf_render_requested`, ... or `unknown(n)`.
    pub event_type: String,
    /// Valid JSON text, or `None` when empty.
    pub payload_json: Option<String>,
    /// Empty when the event belongs to no run.
    pub run_id: String,
}

/// A producer's ledger (`ProducerStats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    pub service: String,
    pub emitted: i64,
    pub published: i64,
    pub dropped: i64,
    /// JSON object `{reason: count}`.
    pub dropped_by_reason: String,
    pub publish_failures: i64,
    pub queue_depth: i64,
    pub started_at: i64,
    pub is_final: bool,
}

/// What an envelope says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    RunStarted(RunStart),
    VariantStarted(VariantStart),
    VariantResult(VariantOutcome),
    RunCompleted(RunOutcome),
    Event(AppEvent),
    ProducerStats(Stats),
}

/// A validated envelope with its place on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fact {
    pub origin: Origin,
    pub meta: Meta,
    pub body: Body,
    /// The message bytes as received (a reference-counted view, not a copy): what a
    /// dead letter keeps when the database refuses this fact.
    pub raw: Bytes,
}

/// The result of parsing one message: a fact to store or a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Fact(Box<Fact>),
    Dead(DeadLetter),
}

/// Parses one message from the stream.
pub fn parse(subjects: &Subjects, subject: &str, stream_seq: u64, raw: Bytes) -> Parsed {
    let origin = Origin {
        subject: subject.to_owned(),
        stream_seq,
    };
    match parse_checked(subjects, subject, &raw) {
        Ok((meta, body)) => Parsed::Fact(Box::new(Fact {
            origin,
            meta,
            body,
            raw,
        })),
        Err(reason) => Parsed::Dead(DeadLetter {
            origin,
            reason,
            raw,
        }),
    }
}

fn parse_checked(
    subjects: &Subjects,
    subject: &str,
    raw: &[u8],
) -> Result<(Meta, Body), Rejection> {
    let expected = subjects
        .kind_of(subject)
        .ok_or_else(|| Rejection::UnknownSubject(subject.to_owned()))?;
    let envelope =
        v1::Envelope::decode(raw).map_err(|err| Rejection::Undecodable(err.to_string()))?;
    let proto_body = envelope.body.as_ref().ok_or(Rejection::NoBody)?;
    let actual = BodyKind::of(proto_body);
    if actual != expected {
        return Err(Rejection::SubjectMismatch {
            subject: subject.to_owned(),
            expected: expected.as_str(),
            actual: actual.as_str(),
        });
    }
    envelope_parts(envelope)
}

/// The envelope's common fields and its body, validated.
fn envelope_parts(envelope: v1::Envelope) -> Result<(Meta, Body), Rejection> {
    required("event_id", &envelope.event_id)?;
    let uuid = uuid::Uuid::parse_str(&envelope.event_id)
        .map_err(|_| Rejection::BadEventId(envelope.event_id.clone()))?;
    // SDKs send the canonical form already: keep their string rather than format anew.
    let mut buf = uuid::Uuid::encode_buffer();
    let canonical = uuid.hyphenated().encode_lower(&mut buf);
    let event_id = if *canonical == envelope.event_id {
        envelope.event_id
    } else {
        canonical.to_owned()
    };
    let meta = Meta {
        event_id,
        occurred_at: envelope.occurred_at,
        shop_id: envelope.shop_id,
        request_id: envelope.request_id,
        producer: envelope.producer,
        producer_seq: clamp(envelope.producer_seq),
    };
    let body = match envelope.body.ok_or(Rejection::NoBody)? {
        ProtoBody::RunStarted(run) => Body::RunStarted(run.try_into()?),
        ProtoBody::VariantStarted(start) => {
            required("run_id", &start.run_id)?;
            required("variant_id", &start.variant_id)?;
            Body::VariantStarted(VariantStart {
                run_id: start.run_id,
                variant_id: start.variant_id,
            })
        }
        ProtoBody::VariantResult(result) => Body::VariantResult(result.try_into()?),
        ProtoBody::RunCompleted(done) => Body::RunCompleted(done.try_into()?),
        ProtoBody::Event(event) => Body::Event(event.try_into()?),
        ProtoBody::ProducerStats(stats) => Body::ProducerStats(stats.into()),
    };
    Ok((meta, body))
}

impl TryFrom<v1::RunStarted> for RunStart {
    type Error = Rejection;

    fn try_from(run: v1::RunStarted) -> Result<Self, Rejection> {
        required("run_id", &run.run_id)?;
        Ok(Self {
            resolved_facts_json: json_blob("resolved_facts_json", run.resolved_facts_json)?,
            prompt_pack_json: json_blob("prompt_pack_json", run.prompt_pack_json)?,
            run_id: run.run_id,
            product_asset_id: run.product_asset_id,
            room_session_id: run.room_session_id,
            prompt_pack_version: run.prompt_pack_version,
            model: run.model,
            product_image: image(run.product_image),
            room_image: image(run.room_image),
            resolved_facts_hash: run.resolved_facts_hash,
            prompt_pack_hash: run.prompt_pack_hash,
            variant_count: i64::from(run.variant_count),
        })
    }
}

impl TryFrom<v1::VariantResult> for VariantOutcome {
    type Error = Rejection;

    fn try_from(result: v1::VariantResult) -> Result<Self, Rejection> {
        required("run_id", &result.run_id)?;
        required("variant_id", &result.variant_id)?;
        Ok(Self {
            status: enum_name::<v1::VariantStatus>(result.status, "VARIANT_STATUS_"),
            error_code: enum_name::<v1::ErrorCode>(result.error_code, "ERROR_CODE_"),
            run_id: result.run_id,
            variant_id: result.variant_id,
            final_prompt_hash: result.final_prompt_hash,
            latency_ms: clamp(result.latency_ms),
            output_image_key: result.output_image_key,
            output_image_hash: result.output_image_hash,
            error_message: result.error_message,
        })
    }
}

impl TryFrom<v1::RunCompleted> for RunOutcome {
    type Error = Rejection;

    fn try_from(done: v1::RunCompleted) -> Result<Self, Rejection> {
        required("run_id", &done.run_id)?;
        Ok(Self {
            status: enum_name::<v1::RunStatus>(done.status, "RUN_STATUS_"),
            run_id: done.run_id,
            total_duration_ms: clamp(done.total_duration_ms),
            success_count: i64::from(done.success_count),
            fail_count: i64::from(done.fail_count),
            timeout_count: i64::from(done.timeout_count),
        })
    }
}

impl TryFrom<v1::Event> for AppEvent {
    type Error = Rejection;

    fn try_from(event: v1::Event) -> Result<Self, Rejection> {
        Ok(Self {
            source: enum_name::<v1::EventSource>(event.source, "EVENT_SOURCE_"),
            event_type: enum_name::<v1::EventType>(event.r#type, "EVENT_TYPE_"),
            payload_json: json_blob("payload_json", event.payload_json)?,
            run_id: event.run_id,
        })
    }
}

impl From<v1::ProducerStats> for Stats {
    fn from(stats: v1::ProducerStats) -> Self {
        let by_reason: serde_json::Map<String, serde_json::Value> = stats
            .dropped_by_reason
            .into_iter()
            .map(|(reason, count)| (reason, count.into()))
            .collect();
        Self {
            service: stats.service,
            emitted: clamp(stats.emitted),
            published: clamp(stats.published),
            dropped: clamp(stats.dropped),
            dropped_by_reason: serde_json::Value::Object(by_reason).to_string(),
            publish_failures: clamp(stats.publish_failures),
            queue_depth: clamp(stats.queue_depth),
            started_at: stats.started_at,
            is_final: stats.r#final,
        }
    }
}

impl Fact {
    /// The body kind.
    pub fn kind(&self) -> BodyKind {
        match &self.body {
            Body::RunStarted(_) => BodyKind::RunStarted,
            Body::VariantStarted(_) => BodyKind::VariantStarted,
            Body::VariantResult(_) => BodyKind::VariantResult,
            Body::RunCompleted(_) => BodyKind::RunCompleted,
            Body::Event(_) => BodyKind::Event,
            Body::ProducerStats(_) => BodyKind::ProducerStats,
        }
    }

    /// The `event_type` column: the event's type for `Event`, the kind otherwise.
    pub fn event_type(&self) -> &str {
        match &self.body {
            Body::Event(event) => &event.event_type,
            _ => self.kind().as_str(),
        }
    }

    /// The `source` column (events only).
    pub fn source(&self) -> Option<&str> {
        match &self.body {
            Body::Event(event) => Some(&event.source),
            _ => None,
        }
    }

    /// The run the fact belongs to, if any.
    pub fn run_id(&self) -> Option<&str> {
        match &self.body {
            Body::RunStarted(b) => Some(&b.run_id),
            Body::VariantStarted(b) => Some(&b.run_id),
            Body::VariantResult(b) => Some(&b.run_id),
            Body::RunCompleted(b) => Some(&b.run_id),
            Body::Event(b) if !b.run_id.is_empty() => Some(&b.run_id),
            Body::Event(_) | Body::ProducerStats(_) => None,
        }
    }

    /// The variant the fact belongs to, if any.
    pub fn variant_id(&self) -> Option<&str> {
        match &self.body {
            Body::VariantStarted(b) => Some(&b.variant_id),
            Body::VariantResult(b) => Some(&b.variant_id),
            _ => None,
        }
    }

    /// The `payload` column: an event's own JSON; for the other kinds a JSON summary of
    /// the body (the big JSON blobs of a run start live in `render_runs` only).
    pub fn payload(&self) -> Option<String> {
        payload::payload(self)
    }
}

fn required(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.is_empty() {
        Err(Rejection::Missing(field))
    } else {
        Ok(())
    }
}

/// Validates a JSON blob without building it (`IgnoredAny`), keeping the original text.
fn json_blob(field: &'static str, text: String) -> Result<Option<String>, Rejection> {
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|err| Rejection::NotJson {
        field,
        error: err.to_string(),
    })?;
    Ok(Some(text))
}

fn image(image: Option<v1::ImageRef>) -> ImageRef {
    let Some(image) = image else {
        return ImageRef::default();
    };
    ImageRef {
        hash: image.hash,
        meta: image.meta.map(|meta| ImageMeta {
            width: i64::from(meta.width),
            height: i64::from(meta.height),
            format: meta.format,
            bytes: clamp(meta.bytes),
        }),
    }
}

/// Unsigned wire counters (and stream sequences) in signed SQL columns: values past
/// `i64::MAX` saturate.
pub(crate) fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Known enums by name (lowercase, prefix stripped); unknown values as `unknown(n)`.
trait NamedEnum: TryFrom<i32> {
    fn name(&self) -> &'static str;
}

macro_rules! named_enum {
    ($($t:ty),*) => {$(
        impl NamedEnum for $t {
            fn name(&self) -> &'static str {
                self.as_str_name()
            }
        }
    )*};
}
named_enum!(
    v1::VariantStatus,
    v1::ErrorCode,
    v1::RunStatus,
    v1::EventSource,
    v1::EventType
);

fn enum_name<E: NamedEnum>(value: i32, prefix: &str) -> String {
    match E::try_from(value) {
        Ok(known) => {
            let name = known.name();
            name.strip_prefix(prefix)
                .unwrap_or(name)
                .to_ascii_lowercase()
        }
        Err(_) => format!("unknown({value})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subjects() -> Subjects {
        Subjects::new("p").unwrap()
    }

    fn envelope(body: ProtoBody) -> v1::Envelope {
        v1::Envelope {
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at: 1,
            shop_id: "s".into(),
            request_id: "r".into(),
            producer: "prod".into(),
            producer_seq: 1,
            body: Some(body),
        }
    }

    fn parse_body(subject: &str, body: ProtoBody) -> Parsed {
        let bytes = Bytes::from(envelope(body).encode_to_vec());
        parse(&subjects(), subject, 7, bytes)
    }

    fn rejection(parsed: Parsed) -> Rejection {
        match parsed {
            Parsed::Dead(dead) => dead.reason,
            Parsed::Fact(fact) => panic!("expected a dead letter, got {fact:?}"),
        }
    }

    #[test]
    fn unknown_enum_values_are_kept_not_dead_lettered() {
        let parsed = parse_body(
            "p.v1.variant.result",
            ProtoBody::VariantResult(v1::VariantResult {
                run_id: "r1".into(),
                variant_id: "v1".into(),
                status: 42,
                error_code: 2,
                ..Default::default()
            }),
        );
        let Parsed::Fact(fact) = parsed else {
            panic!("{parsed:?}")
        };
        let Body::VariantResult(outcome) = fact.body else {
            panic!()
        };
        assert_eq!(outcome.status, "unknown(42)");
        assert_eq!(outcome.error_code, "provider_error");
    }

    #[test]
    fn bad_json_missing_ids_and_wrong_subjects_are_rejections() {
        let bad_json = parse_body(
            "p.v1.event",
            ProtoBody::Event(v1::Event {
                payload_json: "{not json".into(),
                ..Default::default()
            }),
        );
        assert!(matches!(
            rejection(bad_json),
            Rejection::NotJson {
                field: "payload_json",
                ..
            }
        ));
        let no_run = parse_body(
            "p.v1.run.started",
            ProtoBody::RunStarted(v1::RunStarted::default()),
        );
        assert_eq!(rejection(no_run), Rejection::Missing("run_id"));
        let mismatch = parse_body(
            "p.v1.event",
            ProtoBody::RunCompleted(v1::RunCompleted {
                run_id: "r".into(),
                ..Default::default()
            }),
        );
        assert!(matches!(
            rejection(mismatch),
            Rejection::SubjectMismatch { .. }
        ));
        let garbage = parse(
            &subjects(),
            "p.v1.event",
            1,
            Bytes::from_static(b"\xff\xff\xff"),
        );
        assert!(matches!(rejection(garbage), Rejection::Undecodable(_)));
    }

    #[test]
    fn event_ids_are_stored_in_canonical_lowercase() {
        let body = ProtoBody::VariantStarted(v1::VariantStarted {
            run_id: "r".into(),
            variant_id: "v".into(),
        });
        let mut shouting = envelope(body.clone());
        let canonical = shouting.event_id.clone();
        shouting.event_id = canonical.to_uppercase();
        let mut braced = envelope(body);
        braced.event_id = format!("{{{canonical}}}");
        for sent in [shouting, braced] {
            let bytes = Bytes::from(sent.encode_to_vec());
            let Parsed::Fact(fact) = parse(&subjects(), "p.v1.variant.started", 1, bytes) else {
                panic!("{sent:?} should parse")
            };
            assert_eq!(fact.meta.event_id, canonical);
        }
    }

    #[test]
    fn empty_json_blobs_become_null() {
        let parsed = parse_body(
            "p.v1.event",
            ProtoBody::Event(v1::Event {
                source: 2,
                r#type: 1,
                ..Default::default()
            }),
        );
        let Parsed::Fact(fact) = parsed else { panic!() };
        assert_eq!(fact.payload(), None);
        assert_eq!(fact.event_type(), "sf_render_requested");
        assert_eq!(fact.source(), Some("renderer"));
    }
}
