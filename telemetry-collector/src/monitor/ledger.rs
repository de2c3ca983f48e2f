//! The operations pages' rows: dead letters with a safe preview of their bytes, and
//! the producers' loss ledger with why a ledger does not add up.

use crate::store::{DeadLetterRecord, ProducerRecord};

use super::views::{fmt_time, num, opt};

/// Bytes of a dead letter shown in its preview.
pub const PREVIEW_BYTES: usize = 64;

/// A dead letter with a safe preview of its bytes.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    pub id: i64,
    pub time: String,
    pub stream: String,
    pub stream_seq: i64,
    pub subject: String,
    pub reason: String,
    pub size: usize,
    pub hex: String,
    pub text: String,
}

impl From<&DeadLetterRecord> for DeadLetterRow {
    fn from(dead: &DeadLetterRecord) -> Self {
        let (hex, text) = preview(&dead.raw);
        Self {
            id: dead.id,
            time: fmt_time(dead.received_at),
            stream: dead.stream.clone(),
            stream_seq: dead.stream_seq,
            subject: dead.subject.clone(),
            reason: dead.reason.clone(),
            size: dead.raw.len(),
            hex,
            text,
        }
    }
}

/// The first [`PREVIEW_BYTES`] as hex, and as text with anything but printable ASCII
/// shown as `.`.
pub fn preview(raw: &[u8]) -> (String, String) {
    let head = &raw[..raw.len().min(PREVIEW_BYTES)];
    let more = if raw.len() > PREVIEW_BYTES { "…" } else { "" };
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = head
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    (hex.join(" ") + more, text + more)
}

/// A producer's ledger, with why its counts look wrong (if they do).
#[derive(Debug, Clone)]
pub struct ProducerRow {
    pub producer: String,
    pub service: String,
    pub emitted: String,
    pub published: String,
    pub dropped: String,
    pub dropped_by_reason: String,
    pub publish_failures: String,
    pub queue_depth: String,
    pub stored: i64,
    pub last_seen: String,
    pub is_final: bool,
    /// Empty when the counts add up.
    pub problem: String,
}

/// Why a ledger does not add up: events dropped, or a producer that stopped
/// (final stats) with events left unpublished, or whose published count differs from
/// what the collector stored from it.
pub fn ledger_problem(p: &ProducerRecord) -> String {
    let mut problems = Vec::new();
    if let Some(dropped) = p.dropped.filter(|n| *n > 0) {
        problems.push(format!("{dropped} dropped"));
    }
    if p.is_final == Some(true) {
        if let Some(left) = p.queue_depth.filter(|n| *n > 0) {
            problems.push(format!("{left} left unpublished"));
        }
        if let Some(published) = p.published {
            if published != p.stored_events {
                problems.push(format!(
                    "published {published} but {} stored",
                    p.stored_events
                ));
            }
        }
    }
    problems.join("; ")
}

impl From<&ProducerRecord> for ProducerRow {
    fn from(p: &ProducerRecord) -> Self {
        Self {
            producer: p.producer.clone(),
            service: opt(&p.service),
            emitted: num(p.emitted),
            published: num(p.published),
            dropped: num(p.dropped),
            dropped_by_reason: opt(&p.dropped_by_reason),
            publish_failures: num(p.publish_failures),
            queue_depth: num(p.queue_depth),
            stored: p.stored_events,
            last_seen: fmt_time(p.last_seen_at),
            is_final: p.is_final == Some(true),
            problem: ledger_problem(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_show_bytes_as_hex_and_printable_text() {
        let (hex, text) = preview(b"<a\x00\xff");
        assert_eq!(hex, "3c 61 00 ff");
        assert_eq!(text, "<a..");
        let (hex, text) = preview(&[b'x'; PREVIEW_BYTES + 1]);
        assert!(hex.ends_with('…') && text.ends_with('…'));
    }
}
