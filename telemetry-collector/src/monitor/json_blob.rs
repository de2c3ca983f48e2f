//! JSON blobs in `/api/v1` answers: an event's payload, a run's resolved facts and
//! prompt pack, a producer's drops by reason. They are stored as text (never `jsonb`,
//! which refuses the escape `\u0000`), and the API answers them as the JSON they hold,
//! not as a string of JSON a script has to parse a second time.
//!
//! The stored text is passed through verbatim (`RawValue`), not parsed into a
//! `serde_json::Value` and printed again: a producer's big integers keep every digit,
//! `1.50` stays `1.50`, escapes stay as sent, and nothing is built per answer. The
//! parse edge only stores text that is JSON, with the same check `RawValue` makes, so
//! every stored blob passes; one that does not (written by hand, or by a collector
//! older than that check) is answered as a JSON string holding the text, so an answer
//! is always valid JSON and nothing is hidden.

use serde::Serialize;
use serde_json::value::RawValue;

/// A stored JSON blob as an answer's value.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum JsonBlob {
    /// The stored JSON, written as it is.
    Json(Box<RawValue>),
    /// Stored text that is not JSON, as a string.
    Text(String),
}

impl JsonBlob {
    /// The blob `text` holds; `None` (JSON `null`) when nothing is stored.
    pub fn from_stored(text: Option<String>) -> Option<Self> {
        let text = text?;
        Some(match serde_json::from_str::<&RawValue>(&text) {
            Ok(json) => Self::Json(json.to_owned()),
            Err(_) => Self::Text(text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(text: &str) -> String {
        serde_json::to_string(&JsonBlob::from_stored(Some(text.to_owned()))).unwrap()
    }

    #[test]
    fn stored_json_is_answered_verbatim_and_anything_else_as_a_string() {
        let exact = r#"{"big":123456789012345678901234567890,"n":1.50,"s":"a\u0000b"}"#;
        assert_eq!(answered(exact), exact);
        assert_eq!(answered("[1, 2]"), "[1, 2]");
        assert_eq!(answered("{not json"), r#""{not json""#);
        assert_eq!(
            serde_json::to_string(&JsonBlob::from_stored(None)).unwrap(),
            "null"
        );
    }
}
