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
//!
//! Hostile strings: one set of rules here, so SQLite and Postgres store the same rows
//! and no string can make the database refuse a batch (Postgres refuses a NUL byte in
//! `text`, and a b-tree index row over 2704 bytes; SQLite stores both):
//! - Ids are at most [`MAX_ID_BYTES`] bytes of UTF-8 and hold no control character
//!   (`char::is_control`: U+0000–U+001F, U+007F–U+009F), or the envelope is a dead letter
//!   whose reason names the field ([`Rejection::IdTooLong`],
//!   [`Rejection::ControlCharacter`], which do not quote the value). Ids are:
//!   `event_id`, `shop_id`, `request_id`, `producer`; `run_id` and `variant_id`
//!   wherever they appear (an event's `run_id` may be empty); `product_asset_id`,
//!   `room_session_id`, `prompt_pack_version`, `model`, `resolved_facts_hash`,
//!   `prompt_pack_hash`, each image's `hash` and `meta.format`; `final_prompt_hash`,
//!   `output_image_key`, `output_image_hash`; the stats' `service` and every
//!   `dropped_by_reason` key. A tab or a newline is legal text to both databases, but
//!   never part of a real id and makes one ambiguous on a page or in a log line. Other
//!   unicode (format characters, private use, U+FFFD) is an id like any other.
//! - A run start's `run_id`, `model` and `prompt_pack_version` share one row of a
//!   Postgres index (`render_runs_overview`), so together they are at most
//!   [`MAX_RUN_KEY_BYTES`] ([`Rejection::RunKeyTooLong`]).
//! - Free text that is not JSON — `error_message`, the only such field — is stored with
//!   each NUL replaced by U+FFFD (`\u{FFFD}`, the replacement character), on both
//!   backends and in the event's payload summary alike; other control characters stay
//!   (newlines and tabs are ordinary in an error message; pages escape what they show).
//!   It is not truncated: the SDK cuts error messages at 4 KiB, the broker's
//!   `max_payload` (1 MiB by default) bounds a foreign producer's whole envelope, and no
//!   index holds free text.
//! - The subject kept with a message ([`Origin::subject`]) follows the same rule: a
//!   NATS server accepts a NUL in a subject and the stream binds `{prefix}.v1.>`, so
//!   `{prefix}.v1.a<NUL>b` arrives, is an unknown subject, and its dead letter keeps the
//!   subject with U+FFFD for the NUL (the reason quotes it escaped, `\0`). Subjects the
//!   collector knows never change.
//! - A JSON blob never holds a raw NUL once it parsed: JSON forbids unescaped control
//!   characters inside strings and NUL anywhere else, so such a blob is a
//!   [`Rejection::NotJson`] dead letter. The escape `\u0000` is six ASCII characters
//!   and is stored as sent, on both backends: every JSON column is `text`, never
//!   `jsonb` (which would refuse it). Blobs are not bounded here beyond the envelope's
//!   size (the SDK refuses blobs over 64 KiB).
//! - Numbers: `occurred_at` and `started_at` are signed on the wire and stored as they
//!   come, extremes included (both databases hold any `i64`); unsigned counters past
//!   `i64::MAX` saturate ([`clamp`]); 32-bit values widen.

mod payload;

use bytes::Bytes;
use prost::Message as _;
use telemetry_proto::v1::{self, envelope::Body as ProtoBody};
use telemetry_proto::{BodyKind, Subjects};

/// The longest id the collector stores, in bytes of UTF-8; a longer one is a dead
/// letter ([`Rejection::IdTooLong`]).
///
/// Ids are keys of b-tree indexes, and Postgres refuses an index row over 2704 bytes (a
/// third of an 8 KiB page: "index row size exceeds btree version 4 maximum 2704"),
/// failing the whole batch, where SQLite would store it. 1 KiB per id keeps every
/// index of two ids under that limit with room for the rest of the row, and is the
/// SDK's own limit (`telemetry::DEFAULT_MAX_FIELD_BYTES`), so nothing the SDK sends is
/// refused here.
pub const MAX_ID_BYTES: usize = 1024;

/// The most bytes a run start's `run_id`, `model` and `prompt_pack_version` may have
/// together ([`Rejection::RunKeyTooLong`]).
///
/// The three share one row of the Postgres index `render_runs_overview` (with
/// `started_at`), so three ids of [`MAX_ID_BYTES`] would make a row of about 3 KB,
/// over Postgres's 2704-byte b-tree limit (measured: 3056 bytes, refused). 2 KiB leaves
/// room for the row's headers and `started_at`.
pub const MAX_RUN_KEY_BYTES: usize = 2048;

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
    /// An id is longer than [`MAX_ID_BYTES`].
    #[error("field `{field}` is {len} bytes, more than the {max} an id may have")]
    IdTooLong {
        /// The id's field name (`product_image.hash`, `dropped_by_reason` for a key).
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// [`MAX_ID_BYTES`].
        max: usize,
    },
    /// An id holds a control character (`char::is_control`), NUL included.
    #[error("field `{field}` has a control character (U+{code:04X}) at byte {at}")]
    ControlCharacter {
        /// The id's field name.
        field: &'static str,
        /// Byte offset of the first control character.
        at: usize,
        /// Its code point.
        code: u32,
    },
    /// A run start's `run_id`, `model` and `prompt_pack_version` are longer together
    /// than [`MAX_RUN_KEY_BYTES`].
    #[error(
        "fields `run_id`, `model` and `prompt_pack_version` are {len} bytes together, \
         more than the {max} one index row of a run holds"
    )]
    RunKeyTooLong {
        /// Their bytes together.
        len: usize,
        /// [`MAX_RUN_KEY_BYTES`].
        max: usize,
    },
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
    /// The envelope reuses an event id that names another envelope (different bytes):
    /// the first the stream holds is kept, whether or not the two share a batch
    /// (`store::projection`).
    #[error(
        "event id {event_id} was already stored from a different envelope (stream seq \
         {first}); an event id names one envelope, so this one is refused"
    )]
    EventIdConflict {
        /// The reused id.
        event_id: String,
        /// Stream sequence of the envelope kept.
        first: u64,
    },
    /// `occurred_at` is further ahead of the collector's clock than any producer's
    /// clock may be ([`MAX_CLOCK_AHEAD`]): stored, it would sort first forever.
    #[error(
        "occurred_at {occurred_at} is {ahead} ahead of the collector's clock, more than \
         the {bound} a producer's clock may be: fix the producer's clock"
    )]
    ClockAhead {
        /// The envelope's time (RFC 3339, or unix ms when out of range).
        occurred_at: String,
        /// How far ahead of the receive time.
        ahead: String,
        /// [`MAX_CLOCK_AHEAD`].
        bound: &'static str,
    },
}

/// How far ahead of the collector's clock an envelope's `occurred_at` may be. Lists
/// sort by producer time, so one producer with a clock in the year 9999 would pin its
/// runs to the top of `/monitor` forever; past this bound the envelope is a dead letter
/// ([`Rejection::ClockAhead`]) that names the problem. A day is far beyond any real
/// skew (NTP keeps clocks within milliseconds; a wrong time zone is hours) and only
/// compares with the receive time, so replaying old messages never trips it.
pub const MAX_CLOCK_AHEAD: std::time::Duration = std::time::Duration::from_secs(86_400);

impl Rejection {
    /// The [`Rejection::ClockAhead`] of an envelope received at `received_at`, if its
    /// `occurred_at` is past the bound.
    pub fn clock_ahead(occurred_at: i64, received_at: i64) -> Option<Self> {
        let bound = MAX_CLOCK_AHEAD.as_millis() as i64;
        let ahead = occurred_at.saturating_sub(received_at);
        (ahead > bound).then(|| Self::ClockAhead {
            occurred_at: time::OffsetDateTime::from_unix_timestamp_nanos(
                i128::from(occurred_at) * 1_000_000,
            )
            .ok()
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| occurred_at.to_string()),
            ahead: format!("{:.1} days", ahead as f64 / bound as f64),
            bound: "1 day",
        })
    }
}

/// Where a message came from on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// NATS subject, with any NUL replaced by U+FFFD (see the module doc).
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
    /// `timeout`, `provider_error`, ..., `interrupted`, `unspecified` or `unknown(n)`.
    pub error_code: String,
    pub error_message: String,
}

/// A run finished (`RunCompleted`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub run_id: String,
    /// `complete`, `partial`, `failed`, `interrupted`, `unspecified` or `unknown(n)`.
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
pub struct ProducerLedger {
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
    ProducerStats(ProducerLedger),
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
        subject: free_text(subject.to_owned()),
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
    id("event_id", &envelope.event_id)?;
    id("shop_id", &envelope.shop_id)?;
    id("request_id", &envelope.request_id)?;
    id("producer", &envelope.producer)?;
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
            id("run_id", &start.run_id)?;
            id("variant_id", &start.variant_id)?;
            Body::VariantStarted(VariantStart {
                run_id: start.run_id,
                variant_id: start.variant_id,
            })
        }
        ProtoBody::VariantResult(result) => Body::VariantResult(result.try_into()?),
        ProtoBody::RunCompleted(done) => Body::RunCompleted(done.try_into()?),
        ProtoBody::Event(event) => Body::Event(event.try_into()?),
        ProtoBody::ProducerStats(stats) => Body::ProducerStats(stats.try_into()?),
    };
    Ok((meta, body))
}

impl TryFrom<v1::RunStarted> for RunStart {
    type Error = Rejection;

    fn try_from(run: v1::RunStarted) -> Result<Self, Rejection> {
        required("run_id", &run.run_id)?;
        id("run_id", &run.run_id)?;
        id("product_asset_id", &run.product_asset_id)?;
        id("room_session_id", &run.room_session_id)?;
        id("prompt_pack_version", &run.prompt_pack_version)?;
        id("model", &run.model)?;
        id("resolved_facts_hash", &run.resolved_facts_hash)?;
        id("prompt_pack_hash", &run.prompt_pack_hash)?;
        let run_key = run.run_id.len() + run.model.len() + run.prompt_pack_version.len();
        if run_key > MAX_RUN_KEY_BYTES {
            return Err(Rejection::RunKeyTooLong {
                len: run_key,
                max: MAX_RUN_KEY_BYTES,
            });
        }
        Ok(Self {
            resolved_facts_json: json_blob("resolved_facts_json", run.resolved_facts_json)?,
            prompt_pack_json: json_blob("prompt_pack_json", run.prompt_pack_json)?,
            run_id: run.run_id,
            product_asset_id: run.product_asset_id,
            room_session_id: run.room_session_id,
            prompt_pack_version: run.prompt_pack_version,
            model: run.model,
            product_image: image(
                run.product_image,
                "product_image.hash",
                "product_image.meta.format",
            )?,
            room_image: image(run.room_image, "room_image.hash", "room_image.meta.format")?,
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
        id("run_id", &result.run_id)?;
        id("variant_id", &result.variant_id)?;
        id("final_prompt_hash", &result.final_prompt_hash)?;
        id("output_image_key", &result.output_image_key)?;
        id("output_image_hash", &result.output_image_hash)?;
        Ok(Self {
            status: enum_name::<v1::VariantStatus>(result.status, "VARIANT_STATUS_"),
            error_code: enum_name::<v1::ErrorCode>(result.error_code, "ERROR_CODE_"),
            run_id: result.run_id,
            variant_id: result.variant_id,
            final_prompt_hash: result.final_prompt_hash,
            latency_ms: clamp(result.latency_ms),
            output_image_key: result.output_image_key,
            output_image_hash: result.output_image_hash,
            error_message: free_text(result.error_message),
        })
    }
}

impl TryFrom<v1::RunCompleted> for RunOutcome {
    type Error = Rejection;

    fn try_from(done: v1::RunCompleted) -> Result<Self, Rejection> {
        required("run_id", &done.run_id)?;
        id("run_id", &done.run_id)?;
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
        id("run_id", &event.run_id)?;
        Ok(Self {
            source: enum_name::<v1::EventSource>(event.source, "EVENT_SOURCE_"),
            event_type: enum_name::<v1::EventType>(event.r#type, "EVENT_TYPE_"),
            payload_json: json_blob("payload_json", event.payload_json)?,
            run_id: event.run_id,
        })
    }
}

impl TryFrom<v1::ProducerStats> for ProducerLedger {
    type Error = Rejection;

    fn try_from(stats: v1::ProducerStats) -> Result<Self, Rejection> {
        id("service", &stats.service)?;
        // A sorted map, so the first bad key reported is the same on every delivery.
        let by_reason: serde_json::Map<String, serde_json::Value> = stats
            .dropped_by_reason
            .into_iter()
            .map(|(reason, count)| (reason, count.into()))
            .collect();
        for reason in by_reason.keys() {
            id("dropped_by_reason", reason)?;
        }
        Ok(Self {
            service: stats.service,
            emitted: clamp(stats.emitted),
            published: clamp(stats.published),
            dropped: clamp(stats.dropped),
            dropped_by_reason: serde_json::Value::Object(by_reason).to_string(),
            publish_failures: clamp(stats.publish_failures),
            queue_depth: clamp(stats.queue_depth),
            started_at: stats.started_at,
            is_final: stats.r#final,
        })
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

/// An id: at most [`MAX_ID_BYTES`], no control character (see the module doc).
fn id(field: &'static str, value: &str) -> Result<(), Rejection> {
    if value.len() > MAX_ID_BYTES {
        return Err(Rejection::IdTooLong {
            field,
            len: value.len(),
            max: MAX_ID_BYTES,
        });
    }
    match value.char_indices().find(|(_, c)| c.is_control()) {
        Some((at, c)) => Err(Rejection::ControlCharacter {
            field,
            at,
            code: u32::from(c),
        }),
        None => Ok(()),
    }
}

/// Free text (not JSON): each NUL becomes U+FFFD, the rest is kept (see the module doc).
fn free_text(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
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

fn image(
    image: Option<v1::ImageRef>,
    hash_field: &'static str,
    format_field: &'static str,
) -> Result<ImageRef, Rejection> {
    let Some(image) = image else {
        return Ok(ImageRef::default());
    };
    id(hash_field, &image.hash)?;
    if let Some(meta) = &image.meta {
        id(format_field, &meta.format)?;
    }
    Ok(ImageRef {
        hash: image.hash,
        meta: image.meta.map(|meta| ImageMeta {
            width: i64::from(meta.width),
            height: i64::from(meta.height),
            format: meta.format,
            bytes: clamp(meta.bytes),
        }),
    })
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

    /// Every id field but `event_id`: the label of the case, the field a rejection
    /// names, and how to build an otherwise valid envelope with `value` in that field.
    const ID_FIELDS: &[(&str, &str)] = &[
        ("shop_id", "shop_id"),
        ("request_id", "request_id"),
        ("producer", "producer"),
        ("run.started run_id", "run_id"),
        ("product_asset_id", "product_asset_id"),
        ("room_session_id", "room_session_id"),
        ("prompt_pack_version", "prompt_pack_version"),
        ("model", "model"),
        ("product_image.hash", "product_image.hash"),
        ("product_image.meta.format", "product_image.meta.format"),
        ("room_image.hash", "room_image.hash"),
        ("room_image.meta.format", "room_image.meta.format"),
        ("resolved_facts_hash", "resolved_facts_hash"),
        ("prompt_pack_hash", "prompt_pack_hash"),
        ("variant.started run_id", "run_id"),
        ("variant.started variant_id", "variant_id"),
        ("variant.result run_id", "run_id"),
        ("variant.result variant_id", "variant_id"),
        ("final_prompt_hash", "final_prompt_hash"),
        ("output_image_key", "output_image_key"),
        ("output_image_hash", "output_image_hash"),
        ("run.completed run_id", "run_id"),
        ("event run_id", "run_id"),
        ("service", "service"),
        ("dropped_by_reason key", "dropped_by_reason"),
    ];

    /// The subject and an otherwise valid envelope with `value` in the field of `case`.
    fn with_id(case: &str, value: &str) -> (&'static str, v1::Envelope) {
        let v = value.to_owned();
        let image = |hash: String, format: String| {
            Some(v1::ImageRef {
                hash,
                meta: Some(v1::ImageMeta {
                    format,
                    ..Default::default()
                }),
            })
        };
        let mut run = v1::RunStarted {
            run_id: "r".into(),
            ..Default::default()
        };
        let mut result = v1::VariantResult {
            run_id: "r".into(),
            variant_id: "v".into(),
            ..Default::default()
        };
        let mut start = v1::VariantStarted {
            run_id: "r".into(),
            variant_id: "v".into(),
        };
        let mut stats = v1::ProducerStats::default();
        let (subject, body) = match case {
            "shop_id" | "request_id" | "producer" | "run.started run_id" => {
                if case == "run.started run_id" {
                    run.run_id = v.clone();
                }
                ("p.v1.run.started", ProtoBody::RunStarted(run))
            }
            "product_asset_id"
            | "room_session_id"
            | "prompt_pack_version"
            | "model"
            | "resolved_facts_hash"
            | "prompt_pack_hash"
            | "product_image.hash"
            | "product_image.meta.format"
            | "room_image.hash"
            | "room_image.meta.format" => {
                match case {
                    "product_asset_id" => run.product_asset_id = v,
                    "room_session_id" => run.room_session_id = v,
                    "prompt_pack_version" => run.prompt_pack_version = v,
                    "model" => run.model = v,
                    "resolved_facts_hash" => run.resolved_facts_hash = v,
                    "prompt_pack_hash" => run.prompt_pack_hash = v,
                    "product_image.hash" => run.product_image = image(v, "png".into()),
                    "product_image.meta.format" => run.product_image = image("h".into(), v),
                    "room_image.hash" => run.room_image = image(v, "png".into()),
                    _ => run.room_image = image("h".into(), v),
                }
                ("p.v1.run.started", ProtoBody::RunStarted(run))
            }
            "variant.started run_id" | "variant.started variant_id" => {
                if case.ends_with("run_id") {
                    start.run_id = v;
                } else {
                    start.variant_id = v;
                }
                ("p.v1.variant.started", ProtoBody::VariantStarted(start))
            }
            "variant.result run_id"
            | "variant.result variant_id"
            | "final_prompt_hash"
            | "output_image_key"
            | "output_image_hash" => {
                match case {
                    "variant.result run_id" => result.run_id = v,
                    "variant.result variant_id" => result.variant_id = v,
                    "final_prompt_hash" => result.final_prompt_hash = v,
                    "output_image_key" => result.output_image_key = v,
                    _ => result.output_image_hash = v,
                }
                ("p.v1.variant.result", ProtoBody::VariantResult(result))
            }
            "run.completed run_id" => (
                "p.v1.run.completed",
                ProtoBody::RunCompleted(v1::RunCompleted {
                    run_id: v,
                    ..Default::default()
                }),
            ),
            "event run_id" => (
                "p.v1.event",
                ProtoBody::Event(v1::Event {
                    run_id: v,
                    ..Default::default()
                }),
            ),
            "service" | "dropped_by_reason key" => {
                if case == "service" {
                    stats.service = v;
                } else {
                    stats.dropped_by_reason.insert("queue_full".into(), 1);
                    stats.dropped_by_reason.insert(v, u64::MAX);
                }
                ("p.v1.producer.stats", ProtoBody::ProducerStats(stats))
            }
            other => panic!("no case {other}"),
        };
        let mut envelope = envelope(body);
        match case {
            "shop_id" => envelope.shop_id = value.to_owned(),
            "request_id" => envelope.request_id = value.to_owned(),
            "producer" => envelope.producer = value.to_owned(),
            _ => {}
        }
        (subject, envelope)
    }

    fn parse_envelope(subject: &str, envelope: &v1::Envelope) -> Parsed {
        parse(
            &subjects(),
            subject,
            1,
            Bytes::from(envelope.encode_to_vec()),
        )
    }

    #[test]
    fn every_id_field_is_at_most_max_id_bytes() {
        assert_eq!(MAX_ID_BYTES, 1024);
        for &(case, field) in ID_FIELDS {
            // 1024 bytes pass, in ASCII and in two-byte characters alike.
            for fits in ["x".repeat(MAX_ID_BYTES), "é".repeat(MAX_ID_BYTES / 2)] {
                let (subject, envelope) = with_id(case, &fits);
                let parsed = parse_envelope(subject, &envelope);
                assert!(matches!(parsed, Parsed::Fact(_)), "{case}: {parsed:?}");
            }
            // 1025 do not, and the reason names the field, not the value.
            for over in [
                "x".repeat(MAX_ID_BYTES + 1),
                "é".repeat(MAX_ID_BYTES / 2) + "x",
            ] {
                let (subject, envelope) = with_id(case, &over);
                let reason = rejection(parse_envelope(subject, &envelope));
                assert_eq!(
                    reason,
                    Rejection::IdTooLong {
                        field,
                        len: MAX_ID_BYTES + 1,
                        max: MAX_ID_BYTES
                    },
                    "{case}"
                );
                assert_eq!(
                    reason.to_string(),
                    format!("field `{field}` is 1025 bytes, more than the 1024 an id may have")
                );
            }
        }
    }

    #[test]
    fn no_id_field_holds_a_control_character() {
        for &(case, field) in ID_FIELDS {
            for (value, at, code) in [
                ("a\0b", 1, 0),
                ("\0", 0, 0),
                ("é\u{1}", 2, 1),
                ("tab\there", 3, 9),
                ("line\n", 4, 10),
                ("\u{1b}[31m", 0, 0x1b),
                ("del\u{7f}", 3, 0x7f),
                ("c1\u{85}", 2, 0x85),
                ("c1\u{9f}", 2, 0x9f),
            ] {
                let (subject, envelope) = with_id(case, value);
                let reason = rejection(parse_envelope(subject, &envelope));
                assert_eq!(
                    reason,
                    Rejection::ControlCharacter { field, at, code },
                    "{case} {value:?}"
                );
                assert_eq!(
                    reason.to_string(),
                    format!("field `{field}` has a control character (U+{code:04X}) at byte {at}")
                );
            }
            // Other unicode is an id like any other.
            for fine in [
                "\u{a0}",
                "\u{200b}\u{202e}\u{feff}",
                "\u{fffd}",
                "☃😀",
                "\u{10ffff}",
            ] {
                let (subject, envelope) = with_id(case, fine);
                let parsed = parse_envelope(subject, &envelope);
                assert!(
                    matches!(parsed, Parsed::Fact(_)),
                    "{case} {fine:?}: {parsed:?}"
                );
            }
        }
    }

    #[test]
    fn event_id_is_checked_as_an_id_before_as_a_uuid() {
        let body = ProtoBody::VariantStarted(v1::VariantStarted {
            run_id: "r".into(),
            variant_id: "v".into(),
        });
        let with_event_id = |event_id: String| {
            let mut envelope = envelope(body.clone());
            envelope.event_id = event_id;
            rejection(parse_envelope("p.v1.variant.started", &envelope))
        };
        assert_eq!(
            with_event_id("e".repeat(MAX_ID_BYTES + 1)),
            Rejection::IdTooLong {
                field: "event_id",
                len: MAX_ID_BYTES + 1,
                max: MAX_ID_BYTES
            }
        );
        assert!(matches!(
            with_event_id("e".repeat(MAX_ID_BYTES)),
            Rejection::BadEventId(_)
        ));
        let uuid = uuid::Uuid::now_v7().to_string();
        assert_eq!(
            with_event_id(format!("{uuid}\0")),
            Rejection::ControlCharacter {
                field: "event_id",
                at: 36,
                code: 0
            }
        );
    }

    #[test]
    fn run_id_model_and_prompt_pack_version_share_one_index_row() {
        let start = |run_id: usize, model: usize, pack: usize| {
            parse_body(
                "p.v1.run.started",
                ProtoBody::RunStarted(v1::RunStarted {
                    run_id: "r".repeat(run_id),
                    model: "m".repeat(model),
                    prompt_pack_version: "p".repeat(pack),
                    ..Default::default()
                }),
            )
        };
        assert!(matches!(start(1024, 1024, 0), Parsed::Fact(_)));
        assert!(matches!(start(36, 1006, 1006), Parsed::Fact(_)));
        let reason = rejection(start(1024, 1024, 1));
        assert_eq!(
            reason,
            Rejection::RunKeyTooLong {
                len: 2049,
                max: MAX_RUN_KEY_BYTES
            }
        );
        assert!(reason
            .to_string()
            .contains("`run_id`, `model` and `prompt_pack_version`"));
        // Each id's own limit comes first.
        assert_eq!(
            rejection(start(36, 1025, 1024)),
            Rejection::IdTooLong {
                field: "model",
                len: 1025,
                max: MAX_ID_BYTES
            }
        );
    }

    #[test]
    fn nul_in_an_error_message_becomes_the_replacement_character() {
        let parsed = parse_body(
            "p.v1.variant.result",
            ProtoBody::VariantResult(v1::VariantResult {
                run_id: "r".into(),
                variant_id: "v".into(),
                error_message: "\0quota\0 exceeded\n\ttab \u{1b}[0m".into(),
                ..Default::default()
            }),
        );
        let Parsed::Fact(fact) = parsed else {
            panic!("{parsed:?}")
        };
        let Body::VariantResult(outcome) = &fact.body else {
            panic!()
        };
        // NUL only: other controls are ordinary in free text.
        assert_eq!(
            outcome.error_message,
            "\u{fffd}quota\u{fffd} exceeded\n\ttab \u{1b}[0m"
        );
        let payload = fact.payload().unwrap();
        assert!(!payload.contains('\0'));
        assert!(
            payload.contains(r#""error_message":"�quota� exceeded\n\ttab \u001b[0m""#),
            "{payload}"
        );
        // Long free text is kept whole.
        let long = "x".repeat(100_000);
        let Parsed::Fact(fact) = parse_body(
            "p.v1.variant.result",
            ProtoBody::VariantResult(v1::VariantResult {
                run_id: "r".into(),
                variant_id: "v".into(),
                error_message: long.clone(),
                ..Default::default()
            }),
        ) else {
            panic!()
        };
        let Body::VariantResult(outcome) = fact.body else {
            panic!()
        };
        assert_eq!(outcome.error_message, long);
    }

    #[test]
    fn a_raw_nul_is_never_json_and_the_escape_is_stored_as_sent() {
        type Blob = fn(String) -> (&'static str, ProtoBody);
        let blobs: [(&str, Blob); 3] = [
            ("payload_json", |text| {
                (
                    "p.v1.event",
                    ProtoBody::Event(v1::Event {
                        payload_json: text,
                        ..Default::default()
                    }),
                )
            }),
            ("resolved_facts_json", |text| {
                (
                    "p.v1.run.started",
                    ProtoBody::RunStarted(v1::RunStarted {
                        run_id: "r".into(),
                        resolved_facts_json: text,
                        ..Default::default()
                    }),
                )
            }),
            ("prompt_pack_json", |text| {
                (
                    "p.v1.run.started",
                    ProtoBody::RunStarted(v1::RunStarted {
                        run_id: "r".into(),
                        prompt_pack_json: text,
                        ..Default::default()
                    }),
                )
            }),
        ];
        for (field, blob) in blobs {
            for raw_nul in ["{\"a\":\"x\0y\"}", "{}\0", "\0{}", "[1,\0 2]", "\"\u{1}\""] {
                let (subject, body) = blob(raw_nul.into());
                let reason = rejection(parse_body(subject, body));
                assert!(
                    matches!(reason, Rejection::NotJson { field: f, .. } if f == field),
                    "{field} {raw_nul:?}: {reason:?}"
                );
                assert!(!reason.to_string().contains('\0'), "{reason}");
            }
            let escaped = r#"{"a":"x\u0000y","\u0000":["\u001b"]}"#;
            let (subject, body) = blob(escaped.into());
            let Parsed::Fact(fact) = parse_body(subject, body) else {
                panic!("{field}: the escape is JSON")
            };
            let stored = match fact.body {
                Body::Event(event) => event.payload_json,
                Body::RunStarted(run) if field == "resolved_facts_json" => run.resolved_facts_json,
                Body::RunStarted(run) => run.prompt_pack_json,
                _ => unreachable!(),
            };
            assert_eq!(stored.as_deref(), Some(escaped), "{field}: as sent");
        }
    }

    #[test]
    fn a_nul_in_an_unknown_subject_is_kept_as_the_replacement_character() {
        let bytes = Bytes::from(envelope(ProtoBody::Event(v1::Event::default())).encode_to_vec());
        let Parsed::Dead(dead) = parse(&subjects(), "p.v1.a\0b", 3, bytes) else {
            panic!("an unknown subject is a dead letter")
        };
        assert_eq!(dead.origin.subject, "p.v1.a\u{fffd}b");
        assert_eq!(dead.reason.to_string(), r#"unknown subject "p.v1.a\0b""#);
    }

    #[test]
    fn extreme_numbers_are_kept_or_saturate() {
        let mut sent = envelope(ProtoBody::ProducerStats(v1::ProducerStats {
            emitted: u64::MAX,
            dropped_by_reason: [("queue_full".to_owned(), u64::MAX)].into(),
            started_at: i64::MIN,
            ..Default::default()
        }));
        sent.occurred_at = i64::MIN;
        sent.producer_seq = u64::MAX;
        let Parsed::Fact(fact) = parse_envelope("p.v1.producer.stats", &sent) else {
            panic!()
        };
        assert_eq!(fact.meta.occurred_at, i64::MIN);
        assert_eq!(fact.meta.producer_seq, i64::MAX);
        let Body::ProducerStats(stats) = fact.body else {
            panic!()
        };
        assert_eq!((stats.emitted, stats.started_at), (i64::MAX, i64::MIN));
        assert_eq!(
            stats.dropped_by_reason,
            format!(r#"{{"queue_full":{}}}"#, u64::MAX)
        );
    }
}
