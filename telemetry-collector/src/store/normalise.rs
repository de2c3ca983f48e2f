//! What groups errors: a variant's error message with what differs between two
//! occurrences of one error replaced by placeholders, so `request 1f0c…e2 failed
//! after 1234 ms` and `request 9a7b…01 failed after 87 ms` are one group.
//!
//! Computed once per stored result by the projection (the `error_group` column of
//! `variant_results`, from the winning result like the message itself, so it is as
//! order-free and idempotent as the rest) and backfilled for rows stored before
//! the column ([`super::error_groups`]). Grouping at read time would need this
//! function in SQL: SQLite has no regular expressions, and a `GROUP BY` over an
//! expression could not use an index on either database.
//!
//! The rules, applied left to right over words (runs of ASCII letters and digits):
//! - a UUID (`8-4-4-4-12` hex digits) becomes `<uuid>`;
//! - a number becomes `<n>` (`1.5`, `10.0.0.1` and `2026-11-29` alike: `<n>`,
//!   `<n>-<n>-<n>`), except an HTTP status (100 to 599) right after `HTTP`,
//!   `HTTP/<version>`, `status` or `status code` (with a space, `:` or `=`
//!   between): `HTTP 503` and `HTTP 429` are different failures;
//! - a hex hash or id (`0x…`, or at least [`MIN_HEX_CHARS`] hex digits with a digit
//!   among them) becomes `<hex>`;
//! - a word mixing letters and digits that looks random (at least
//!   [`MIN_ID_CHARS`] long, or two separate runs of digits and at least 6 long)
//!   becomes `<id>`; in any other word each run of digits becomes `<n>` (`v2` →
//!   `v<n>`, `run-17` → `run-<n>`);
//! - runs of white space become one space, and the result is cut at
//!   [`MAX_GROUP_CHARS`] characters (with `…`).

/// Longest normalised message kept (characters, before the `…`).
pub const MAX_GROUP_CHARS: usize = 200;
/// Shortest hex word taken for a hash or an id.
pub const MIN_HEX_CHARS: usize = 8;
/// Shortest word of letters and digits taken for a random id.
pub const MIN_ID_CHARS: usize = 16;

/// The message's group: see the module doc.
pub fn normalise(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(message.len().min(MAX_GROUP_CHARS + 8));
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphanumeric() {
            if is_uuid(&bytes[i..]) {
                out.push_str("<uuid>");
                i += 36;
                continue;
            }
            let end = word_end(bytes, i);
            let word = &message[i..end];
            if word.bytes().all(|b| b.is_ascii_digit()) {
                // A number, with its fraction or dotted parts (`1.5`, `10.0.0.1`).
                let mut end = end;
                while bytes.get(end) == Some(&b'.')
                    && bytes.get(end + 1).is_some_and(u8::is_ascii_digit)
                {
                    let next = word_end(bytes, end + 1);
                    if !bytes[end + 1..next].iter().all(u8::is_ascii_digit) {
                        break;
                    }
                    end = next;
                }
                let number = &message[i..end];
                if is_http_status(number) && after_status_word(&out) {
                    out.push_str(number);
                } else {
                    out.push_str("<n>");
                }
                i = end;
                continue;
            }
            if is_hex_word(word) {
                out.push_str("<hex>");
            } else {
                mixed(word, &mut out);
            }
            i = end;
            continue;
        }
        let ch = message[i..].chars().next().expect("at a char boundary");
        if ch.is_whitespace() {
            if !out.is_empty() && !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(ch);
        }
        i += ch.len_utf8();
    }
    let trimmed = out.trim_end();
    match trimmed.char_indices().nth(MAX_GROUP_CHARS) {
        Some((cut, _)) => format!("{}…", trimmed[..cut].trim_end()),
        None => trimmed.to_owned(),
    }
}

/// Where the word of ASCII letters and digits starting at `start` ends.
fn word_end(bytes: &[u8], start: usize) -> usize {
    start
        + bytes[start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count()
}

/// `8-4-4-4-12` hex digits, not followed by another letter or digit.
fn is_uuid(bytes: &[u8]) -> bool {
    if bytes.len() < 36 || bytes.get(36).is_some_and(u8::is_ascii_alphanumeric) {
        return false;
    }
    bytes[..36].iter().enumerate().all(|(i, b)| match i {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    })
}

/// `0x` and hex digits, or [`MIN_HEX_CHARS`] hex digits with a digit among them (a
/// word of the letters `a` to `f` alone, like `facade`, stays a word).
fn is_hex_word(word: &str) -> bool {
    if let Some(rest) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        return !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit());
    }
    word.len() >= MIN_HEX_CHARS
        && word.bytes().all(|b| b.is_ascii_hexdigit())
        && word.bytes().any(|b| b.is_ascii_digit())
}

/// A word of letters and digits (not all digits, not hex): a random id, or a word
/// with numbers in it.
fn mixed(word: &str, out: &mut String) {
    let digit_runs = word
        .as_bytes()
        .split(|b| !b.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .count();
    let letters = word.bytes().any(|b| b.is_ascii_alphabetic());
    if letters
        && digit_runs > 0
        && (word.len() >= MIN_ID_CHARS || (digit_runs >= 2 && word.len() >= 6))
    {
        out.push_str("<id>");
        return;
    }
    let mut in_digits = false;
    for c in word.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str("<n>");
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
}

/// Three digits from 100 to 599.
fn is_http_status(number: &str) -> bool {
    number.len() == 3 && matches!(number.as_bytes()[0], b'1'..=b'5')
}

/// Whether the text so far ends with `HTTP`, `HTTP/<n>`, `status` or `status code`,
/// and a space, `:` or `=` (any case).
fn after_status_word(out: &str) -> bool {
    let head = out.trim_end_matches([' ', ':', '=']);
    if head.len() == out.len() {
        return false;
    }
    let lower = head.to_ascii_lowercase();
    ["http", "http/<n>", "status", "status code"]
        .iter()
        .any(|word| {
            lower.ends_with(word)
                && !lower[..lower.len() - word.len()]
                    .bytes()
                    .next_back()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_hashes_and_numbers_become_placeholders() {
        let cases = [
            (
                "request 0192f1c4-7b3a-7e21-9c4d-3f2a1b0c9d8e failed after 1234 ms",
                "request <uuid> failed after <n> ms",
            ),
            (
                "request 0192F1C4-7B3A-7E21-9C4D-3F2A1B0C9D8E failed after 87 ms",
                "request <uuid> failed after <n> ms",
            ),
            (
                "image sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 missing",
                "image sha<n>:<hex> missing",
            ),
            ("object 5f2b9c1e not found", "object <hex> not found"),
            ("pointer 0x7ffd3a2b is null", "pointer <hex> is null"),
            ("retry 3 of 5 in 1.5 s", "retry <n> of <n> in <n> s"),
            ("upstream 10.0.0.12:8443 refused", "upstream <n>:<n> refused"),
            ("run-17 variant v2 failed", "run-<n> variant v<n> failed"),
            (
                "token aZ3kP9qLmN2xR7tY rejected",
                "token <id> rejected",
            ),
            ("key k9x2m7 expired", "key <id> expired"),
            ("at 2026-11-29T13:45:07Z", "at <n>-<n>-<n>T<n>:<n>:<n>Z"),
            ("quota exceeded", "quota exceeded"),
            ("facade deadbeef", "facade deadbeef"),
            ("", ""),
        ];
        for (message, group) in cases {
            assert_eq!(normalise(message), group, "{message:?}");
        }
    }

    #[test]
    fn http_statuses_stay_apart() {
        assert_eq!(
            normalise("provider returned HTTP 503: UNAVAILABLE: try again in 30s"),
            "provider returned HTTP 503: UNAVAILABLE: try again in <n>s"
        );
        assert_eq!(
            normalise("provider returned HTTP 429: RESOURCE_EXHAUSTED"),
            "provider returned HTTP 429: RESOURCE_EXHAUSTED"
        );
        assert_eq!(
            normalise("HTTP/1.1 502 Bad Gateway"),
            "HTTP/<n> 502 Bad Gateway"
        );
        assert_eq!(normalise("status=404"), "status=404");
        assert_eq!(normalise("status code: 500"), "status code: 500");
        // Not a status: another number after the word, or a word ending in "status".
        assert_eq!(normalise("HTTP 2048 bytes"), "HTTP <n> bytes");
        assert_eq!(normalise("substatus 503"), "substatus <n>");
        assert_eq!(normalise("took 503 ms"), "took <n> ms");
    }

    #[test]
    fn white_space_collapses_and_long_messages_are_cut() {
        assert_eq!(normalise("  a \n\t b  "), "a b");
        let long = "word ".repeat(100);
        let group = normalise(&long);
        assert_eq!(group.chars().count(), MAX_GROUP_CHARS);
        assert!(group.ends_with("word…"), "{group}");
        // Multi-byte text is cut at a character boundary.
        let accents = "é".repeat(300);
        assert_eq!(normalise(&accents).chars().count(), MAX_GROUP_CHARS + 1);
    }

    #[test]
    fn two_occurrences_of_one_error_share_a_group() {
        let a = normalise(
            "provider returned HTTP 503: model overloaded (request 3f9a2c1d0e8b7a65, 1200 ms)",
        );
        let b = normalise(
            "provider returned HTTP 503: model overloaded (request 00ff12ab34cd56ef, 87 ms)",
        );
        assert_eq!(a, b);
        assert_ne!(
            a,
            normalise(
                "provider returned HTTP 500: model overloaded (request 00ff12ab34cd56ef, 87 ms)"
            )
        );
    }
}
