//! No envelope can stall ingest: when the database refuses a batch for good
//! ([`StoreError::is_permanent`]: bad encoding, a value too large for an index, ...),
//! the batch is split in halves, each half written in its own transaction, until the
//! refused envelopes stand alone; each of those becomes a dead letter carrying the
//! database's message, and everything else is stored. Only then is the batch acked.
//!
//! A transient error at any step (outage, disk full) is returned as it is: the caller
//! retries the whole batch, and the halves that already committed are written again
//! as no-ops (the writes are idempotent and order-free).
//!
//! A batch with one refused envelope among `n` costs about `2·log2(n)` extra
//! transactions, on a path that the parse edge's validation makes rare.

use crate::domain::{DeadLetter, Origin, Rejection};

use super::{Batch, Store, StoreError, WriteReport};

/// Longest database message kept as a dead letter's reason, in bytes.
pub const MAX_REASON_BYTES: usize = 1_024;

/// What [`write_isolating`] stored and refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Isolated {
    /// Rows written, summed over every transaction.
    pub report: WriteReport,
    /// Envelopes the database refused, now dead letters, with the database's message.
    pub rejected: Vec<(Origin, String)>,
}

/// Writes `batch` in one transaction, or, if the database refuses part of it for good,
/// in parts; see the module doc.
pub async fn write_isolating(store: &dyn Store, batch: &Batch) -> Result<Isolated, StoreError> {
    let first = match store.write(batch).await {
        Ok(report) => {
            return Ok(Isolated {
                report,
                rejected: Vec::new(),
            })
        }
        Err(err) if err.is_permanent() => err,
        Err(err) => return Err(err),
    };
    tracing::warn!(error = %first, envelopes = batch.facts.len(), "the database refused part of a batch; isolating it");
    let mut out = Isolated::default();
    let mut parts = halves(batch);
    while let Some(part) = parts.pop() {
        let err = match store.write(&part).await {
            Ok(report) => {
                add(&mut out.report, report);
                continue;
            }
            Err(err) if err.is_permanent() => err,
            Err(err) => return Err(err),
        };
        match (part.facts.as_slice(), part.dead.as_slice()) {
            ([fact], []) => {
                let reason = reason_text(&err.to_string());
                tracing::warn!(subject = %fact.origin.subject, stream_seq = fact.origin.stream_seq, %reason, "dead letter: the database refused the envelope");
                out.rejected.push((fact.origin.clone(), reason.clone()));
                parts.push(Batch {
                    facts: Vec::new(),
                    dead: vec![DeadLetter {
                        origin: fact.origin.clone(),
                        reason: Rejection::Database(reason),
                        raw: fact.raw.clone(),
                    }],
                    ..part.clone_empty()
                });
            }
            ([], [dead]) if !matches!(&dead.reason, Rejection::Database(r) if r == UNSTORABLE) => {
                // The dead letter's own text is refused (it quotes the value?): keep
                // its bytes with a reason the database takes.
                parts.push(Batch {
                    facts: Vec::new(),
                    dead: vec![DeadLetter {
                        reason: Rejection::Database(UNSTORABLE.to_owned()),
                        ..dead.clone()
                    }],
                    ..part.clone_empty()
                });
            }
            ([], [_]) | ([], []) => return Err(err),
            _ => parts.extend(halves(&part)),
        }
    }
    Ok(out)
}

/// A dead letter's reason when the database refused the first one.
const UNSTORABLE: &str = "refused by the database, and so was the text of its reason";

/// The two halves of a part: its facts split in the middle; its dead letters (rare)
/// split likewise once it has no facts.
fn halves(batch: &Batch) -> Vec<Batch> {
    let (left, right) = if batch.facts.len() > 1 {
        let (a, b) = batch.facts.split_at(batch.facts.len() / 2);
        (
            Batch {
                facts: a.to_vec(),
                dead: batch.dead.clone(),
                ..batch.clone_empty()
            },
            Batch {
                facts: b.to_vec(),
                ..batch.clone_empty()
            },
        )
    } else if batch.facts.len() == 1 && !batch.dead.is_empty() {
        (
            Batch {
                facts: batch.facts.clone(),
                ..batch.clone_empty()
            },
            Batch {
                dead: batch.dead.clone(),
                ..batch.clone_empty()
            },
        )
    } else {
        let (a, b) = batch.dead.split_at(batch.dead.len() / 2);
        (
            Batch {
                dead: a.to_vec(),
                ..batch.clone_empty()
            },
            Batch {
                dead: b.to_vec(),
                ..batch.clone_empty()
            },
        )
    };
    vec![right, left]
}

fn add(total: &mut WriteReport, part: WriteReport) {
    total.stored += part.stored;
    total.duplicates += part.duplicates;
    total.dead_letters += part.dead_letters;
    total.refused.extend(part.refused);
}

/// The database's message as a storable reason: no control characters (a NUL would be
/// refused again), at most [`MAX_REASON_BYTES`].
fn reason_text(message: &str) -> String {
    let mut reason: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if reason.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    reason
}

impl Batch {
    /// The same stream and receive time, no rows.
    fn clone_empty(&self) -> Batch {
        Batch {
            stream: self.stream.clone(),
            received_at: self.received_at,
            facts: Vec::new(),
            dead: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_storable_and_bounded() {
        assert_eq!(reason_text("a\0b\nc"), "a b c");
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = reason_text(&long);
        assert!(cut.len() <= MAX_REASON_BYTES && cut.len() >= MAX_REASON_BYTES - 1);
    }
}
