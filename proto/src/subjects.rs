//! Subject names. One subject per body kind under `{prefix}.v1.`, so a consumer can
//! filter by kind and the stream binds them all with `{prefix}.v1.>`.
//!
//! No shop id or other user data goes into a subject: shop domains contain dots,
//! which are subject token separators.

use crate::v1::envelope::Body;

/// Default subject prefix (`TELEMETRY_SUBJECT_PREFIX`).
pub const DEFAULT_PREFIX: &str = "telemetry";

/// The kind of an envelope's body, which decides its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BodyKind {
    RunStarted,
    VariantStarted,
    VariantResult,
    RunCompleted,
    Event,
    ProducerStats,
}

impl BodyKind {
    /// Every kind, in contract order.
    pub const ALL: [BodyKind; 6] = [
        BodyKind::RunStarted,
        BodyKind::VariantStarted,
        BodyKind::VariantResult,
        BodyKind::RunCompleted,
        BodyKind::Event,
        BodyKind::ProducerStats,
    ];

    /// The subject suffix after `{prefix}.v1.`.
    pub const fn suffix(self) -> &'static str {
        match self {
            BodyKind::RunStarted => "run.started",
            BodyKind::VariantStarted => "variant.started",
            BodyKind::VariantResult => "variant.result",
            BodyKind::RunCompleted => "run.completed",
            BodyKind::Event => "event",
            BodyKind::ProducerStats => "producer.stats",
        }
    }

    /// Stable snake_case name, used as the `kind` column and metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            BodyKind::RunStarted => "run_started",
            BodyKind::VariantStarted => "variant_started",
            BodyKind::VariantResult => "variant_result",
            BodyKind::RunCompleted => "run_completed",
            BodyKind::Event => "event",
            BodyKind::ProducerStats => "producer_stats",
        }
    }

    /// The kind of a decoded body.
    pub fn of(body: &Body) -> BodyKind {
        match body {
            Body::RunStarted(_) => BodyKind::RunStarted,
            Body::VariantStarted(_) => BodyKind::VariantStarted,
            Body::VariantResult(_) => BodyKind::VariantResult,
            Body::RunCompleted(_) => BodyKind::RunCompleted,
            Body::Event(_) => BodyKind::Event,
            Body::ProducerStats(_) => BodyKind::ProducerStats,
        }
    }
}

/// The subjects of one prefix. Built once; publishing borrows the strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
    by_kind: [String; 6],
}

/// Why a subject prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPrefix(pub String);

impl std::fmt::Display for InvalidPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid subject prefix {:?}: use dot-separated tokens of letters, digits, '-' or '_' (no spaces, '*', '>' or empty tokens)",
            self.0
        )
    }
}

impl std::error::Error for InvalidPrefix {}

impl Subjects {
    /// Subjects under `prefix` (e.g. `telemetry`, or `test_ab12cd` in tests).
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let valid = !prefix.is_empty()
            && prefix.split('.').all(|token| {
                !token.is_empty()
                    && token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(InvalidPrefix(prefix.to_owned()));
        }
        let by_kind = BodyKind::ALL.map(|kind| format!("{prefix}.v1.{}", kind.suffix()));
        Ok(Self {
            prefix: prefix.to_owned(),
            by_kind,
        })
    }

    /// The prefix these subjects were built from.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The subject for one body kind.
    pub fn for_kind(&self, kind: BodyKind) -> &str {
        &self.by_kind[kind as usize]
    }

    /// The wildcard the stream binds: `{prefix}.v1.>`.
    pub fn wildcard(&self) -> String {
        format!("{}.v1.>", self.prefix)
    }

    /// The kind a subject of this prefix carries, if it is one of ours.
    pub fn kind_of(&self, subject: &str) -> Option<BodyKind> {
        BodyKind::ALL
            .into_iter()
            .find(|kind| self.by_kind[*kind as usize] == subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_contract() {
        let s = Subjects::new("telemetry").unwrap();
        assert_eq!(s.for_kind(BodyKind::RunStarted), "telemetry.v1.run.started");
        assert_eq!(
            s.for_kind(BodyKind::VariantStarted),
            "telemetry.v1.variant.started"
        );
        assert_eq!(
            s.for_kind(BodyKind::VariantResult),
            "telemetry.v1.variant.result"
        );
        assert_eq!(
            s.for_kind(BodyKind::RunCompleted),
            "telemetry.v1.run.completed"
        );
        assert_eq!(s.for_kind(BodyKind::Event), "telemetry.v1.event");
        assert_eq!(
            s.for_kind(BodyKind::ProducerStats),
            "telemetry.v1.producer.stats"
        );
        assert_eq!(s.wildcard(), "telemetry.v1.>");
        assert_eq!(
            s.kind_of("telemetry.v1.variant.result"),
            Some(BodyKind::VariantResult)
        );
        assert_eq!(s.kind_of("other.v1.event"), None);
    }

    #[test]
    fn prefixes_that_would_break_subjects_are_refused() {
        for bad in ["", "a..b", "a b", "a.*", ">", ".a", "a."] {
            let err = Subjects::new(bad).unwrap_err();
            assert!(err.to_string().contains("invalid subject prefix"), "{bad}");
        }
        assert!(Subjects::new("test_x.y-z").is_ok());
    }
}
