//! Shopify app-proxy signatures.
//!
//! The storefront reaches the renderer through Shopify's app proxy, which appends
//! `shop`, `logged_in_customer_id`, `path_prefix`, `timestamp` and a `signature` to the
//! query string. The signature is the documented scheme: every query parameter except
//! `signature`, as `key=value` (several values of one key joined by commas), sorted by
//! key, concatenated with no separator, HMAC-SHA256 with the app's API secret, hex.
//! Checking it is what lets the renderer trust the `shop` parameter.
//!
//! A correct signature is not enough; [`verify`] also requires:
//!
//! - **A fresh `timestamp`**: exactly one, in unix seconds, within the window
//!   (`SHOPIFY_PROXY_MAX_AGE_SECS`, 90 s like Shopify's own libraries) of now, in
//!   either direction, so a signed URL that leaked cannot be replayed later.
//! - **Exactly one `shop`, a `*.myshopify.com` domain**: with two, which shop a request
//!   is for would depend on which one the reader takes.
//! - **Parameters that can be read back only one way.** The signed text has no
//!   separators, so `shop=X&timestamp=T` and the single parameter `shop` with the value
//!   `Xtimestamp=T` sign the same text `shop=Xtimestamp=T`. A parameter whose name or
//!   value contains `=` is refused, and names must be letters, digits and `_` (all of
//!   Shopify's are): no value can carry a `key=value` of its own, and no name can
//!   swallow the end of a domain. Where one value ends and the next name starts can
//!   still move in the signed text, but `shop` must end in `.myshopify.com` and
//!   `timestamp` is digits followed by a name that sorts after it (so starts with a
//!   letter), which pins both. A list of allowed names would pin every parameter, and
//!   refuse every request the day Shopify adds one; these rules refuse only queries no
//!   storefront of ours sends.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::input::echo;

/// Why a request's signed query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `signature` parameter.
    #[error("missing app-proxy signature")]
    Missing,
    /// `signature` is not hex, repeated, or does not match.
    #[error("invalid app-proxy signature")]
    Invalid,
    /// A parameter's name or value contains `=`, or its name is not `[A-Za-z0-9_]+`.
    #[error(
        "query parameter {0} has '=' in its name or value, or a name of other than \
         letters, digits and '_': the app-proxy signature would not tell it from \
         another query"
    )]
    Ambiguous(String),
    /// Not exactly one `shop`, or not a `*.myshopify.com` domain.
    #[error("the signed query must have exactly one shop, a *.myshopify.com domain: {0}")]
    InvalidShop(String),
    /// Not exactly one `timestamp`, or not unix seconds.
    #[error("the signed query must have exactly one timestamp, in unix seconds: {0}")]
    InvalidTimestamp(String),
    /// The timestamp is older than the window.
    #[error(
        "app-proxy timestamp {timestamp} is {age_secs} s old, more than the \
         {max_age_secs} s allowed"
    )]
    Stale {
        /// The signed timestamp.
        timestamp: u64,
        /// How old it is.
        age_secs: u64,
        /// The window.
        max_age_secs: u64,
    },
    /// The timestamp is further ahead than the window.
    #[error(
        "app-proxy timestamp {timestamp} is {ahead_secs} s in the future, more than the \
         {max_age_secs} s allowed"
    )]
    Future {
        /// The signed timestamp.
        timestamp: u64,
        /// How far ahead it is.
        ahead_secs: u64,
        /// The window.
        max_age_secs: u64,
    },
}

impl SignatureError {
    /// A stable, machine-readable code for the reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing_signature",
            Self::Invalid => "invalid_signature",
            Self::Ambiguous(_) => "ambiguous_query",
            Self::InvalidShop(_) => "invalid_shop",
            Self::InvalidTimestamp(_) => "invalid_timestamp",
            Self::Stale { .. } => "stale_timestamp",
            Self::Future { .. } => "future_timestamp",
        }
    }

    /// Whether the request lacks valid credentials (401): no signature, a wrong one, or
    /// one outside its time window. The others are well signed but malformed (400).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            Self::Missing | Self::Invalid | Self::Stale { .. } | Self::Future { .. }
        )
    }
}

/// The parameters of a raw query string, decoded, grouped by key in key order.
fn grouped(query: &str) -> BTreeMap<String, Vec<String>> {
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        params
            .entry(key.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    params
}

/// The message Shopify signs for `params` (the `signature` parameter left out).
fn message(params: &BTreeMap<String, Vec<String>>) -> String {
    params
        .iter()
        .filter(|(key, _)| key.as_str() != "signature")
        .map(|(key, values)| format!("{key}={}", values.join(",")))
        .collect()
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key")
}

/// Signs `query` (a raw query string without `signature`) as Shopify would, returning
/// the hex signature. Used by tests and tools that play the storefront.
pub fn sign(query: &str, secret: &str) -> String {
    let mut mac = mac(secret);
    mac.update(message(&grouped(query)).as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `shop` is a shop's `*.myshopify.com` domain: a lowercase DNS label (letters,
/// digits, inner hyphens, at most 63) before `.myshopify.com`.
pub fn valid_shop_domain(shop: &str) -> bool {
    let Some(label) = shop.strip_suffix(".myshopify.com") else {
        return false;
    };
    (1..=63).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether a parameter name is plain: `[A-Za-z0-9_]+`.
fn plain_name(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The one value of `key`, or why there is not exactly one.
fn single<'a>(params: &'a BTreeMap<String, Vec<String>>, key: &str) -> Result<&'a str, String> {
    match params.get(key).map(Vec::as_slice) {
        Some([value]) => Ok(value),
        None | Some([]) => Err(format!("it has no {key}")),
        Some(values) => Err(format!("it has {} of them", values.len())),
    }
}

/// Verifies the app-proxy signature of a raw query string, then the rules in the
/// module docs against `now` and the `max_age` window, and returns the signed shop.
/// The signature comparison is constant-time.
pub fn verify(
    query: &str,
    secret: &str,
    now: SystemTime,
    max_age: Duration,
) -> Result<String, SignatureError> {
    let params = grouped(query);
    let signature = match params.get("signature").map(Vec::as_slice) {
        None | Some([]) => return Err(SignatureError::Missing),
        Some([signature]) => signature,
        Some(_) => return Err(SignatureError::Invalid),
    };
    let expected = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
    let mut mac = mac(secret);
    mac.update(message(&params).as_bytes());
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Invalid)?;

    for (key, values) in &params {
        if !plain_name(key) || values.iter().any(|value| value.contains('=')) {
            return Err(SignatureError::Ambiguous(echo(key)));
        }
    }
    let shop = single(&params, "shop").map_err(SignatureError::InvalidShop)?;
    if !valid_shop_domain(shop) {
        return Err(SignatureError::InvalidShop(format!(
            "{} is not one",
            echo(shop)
        )));
    }
    let timestamp = single(&params, "timestamp").map_err(SignatureError::InvalidTimestamp)?;
    let timestamp: u64 = timestamp
        .parse()
        .ok()
        .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| SignatureError::InvalidTimestamp(format!("{} is not", echo(timestamp))))?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let max_age_secs = max_age.as_secs();
    if now > timestamp && now - timestamp > max_age_secs {
        return Err(SignatureError::Stale {
            timestamp,
            age_secs: now - timestamp,
            max_age_secs,
        });
    }
    if timestamp > now && timestamp - now > max_age_secs {
        return Err(SignatureError::Future {
            timestamp,
            ahead_secs: timestamp - now,
            max_age_secs,
        });
    }
    Ok(shop.to_owned())
}

/// The unsigned `shop` parameter, for deployments without a secret (local runs).
pub fn unverified_shop(query: &str) -> Option<String> {
    grouped(query)
        .remove("shop")
        .and_then(|values| values.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(90);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn signed(query: &str, secret: &str) -> String {
        format!("{query}&signature={}", sign(query, secret))
    }

    /// The example from Shopify's app-proxy documentation (the docs show the shop as
    /// `{shop}`; the signature is for `shop-name.myshopify.com`).
    #[test]
    fn shopify_documented_example_verifies() {
        let query = "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1\
                     &path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555\
                     &signature=4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb";
        assert_eq!(
            verify(query, "hush", at(1317327555 + 30), WINDOW).unwrap(),
            "shop-name.myshopify.com"
        );
        assert_eq!(
            verify(query, "hush", at(1317327555 + 91), WINDOW).unwrap_err(),
            SignatureError::Stale {
                timestamp: 1317327555,
                age_secs: 91,
                max_age_secs: 90
            }
        );
    }

    #[test]
    fn a_tampered_query_is_refused() {
        let query = "shop=a.myshopify.com&timestamp=1000";
        let good = signed(query, "secret");
        let now = at(1000);
        assert_eq!(
            verify(&good, "secret", now, WINDOW).unwrap(),
            "a.myshopify.com"
        );
        let tampered = good.replace("a.myshopify", "b.myshopify");
        let refused = |query: &str, secret| verify(query, secret, now, WINDOW).unwrap_err();
        assert_eq!(refused(&tampered, "secret"), SignatureError::Invalid);
        assert_eq!(refused(&good, "other"), SignatureError::Invalid);
        assert_eq!(refused(query, "secret"), SignatureError::Missing);
        assert_eq!(
            refused("shop=a&signature=zz", "secret"),
            SignatureError::Invalid
        );
        let twice = format!("{good}&signature={}", sign(query, "secret"));
        assert_eq!(refused(&twice, "secret"), SignatureError::Invalid);
    }

    #[test]
    fn the_window_holds_both_ways() {
        let query = signed("shop=a.myshopify.com&timestamp=1000", "s");
        for now in [910, 1000, 1090] {
            assert!(verify(&query, "s", at(now), WINDOW).is_ok(), "{now}");
        }
        let err = verify(&query, "s", at(1091), WINDOW).unwrap_err();
        assert_eq!(err.reason(), "stale_timestamp");
        assert!(err.is_unauthorized());
        let err = verify(&query, "s", at(909), WINDOW).unwrap_err();
        assert_eq!(err.reason(), "future_timestamp");
        assert_eq!(
            err.to_string(),
            "app-proxy timestamp 1000 is 91 s in the future, more than the 90 s allowed"
        );
    }

    #[test]
    fn signed_but_malformed_queries_are_refused_by_reason() {
        let now = at(1000);
        for (query, reason) in [
            ("timestamp=1000", "invalid_shop"),
            (
                "shop=v.myshopify.com&shop=a.myshopify.com&timestamp=1000",
                "invalid_shop",
            ),
            (
                "shop=v.myshopify.com.evil.io&timestamp=1000",
                "invalid_shop",
            ),
            ("shop=V.myshopify.com&timestamp=1000", "invalid_shop"),
            ("shop=-v.myshopify.com&timestamp=1000", "invalid_shop"),
            ("shop=v.myshopify.com", "invalid_timestamp"),
            ("shop=v.myshopify.com&timestamp=+1000", "invalid_timestamp"),
            (
                "shop=v.myshopify.com&timestamp=1000&timestamp=1000",
                "invalid_timestamp",
            ),
            ("shop=v.myshopify.comtimestamp%3D1000", "ambiguous_query"),
            (
                "shop=v.myshopify.com&timestamp=1000&a%3Db=c",
                "ambiguous_query",
            ),
            (
                "shop=v.myshopify.com&timestamp=1000&x.y=1",
                "ambiguous_query",
            ),
        ] {
            let err = verify(&signed(query, "s"), "s", now, WINDOW).unwrap_err();
            assert_eq!(err.reason(), reason, "{query}: {err}");
            assert!(!err.is_unauthorized(), "{query}");
        }
    }

    /// The example: the signature of `shop=X&timestamp=T` is the signature of
    /// `shop=Xtimestamp=T`, and of `shop=Xtime&stamp=T`; neither gets through.
    #[test]
    fn a_signature_cannot_be_regrouped() {
        let signature = sign("shop=v.myshopify.com&timestamp=1000", "s");
        for regrouped in [
            "shop=v.myshopify.comtimestamp%3D1000",
            "shop=v.myshopify.comtime&stamp=1000",
            "shop%3Dv.myshopify.comtimestamp=1000",
        ] {
            let query = format!("{regrouped}&signature={signature}");
            // Same signed text, so the signature matches...
            assert_eq!(
                sign(regrouped, "s"),
                signature,
                "{regrouped} is not a regrouping"
            );
            // ...but the query is refused.
            assert!(
                verify(&query, "s", at(1000), WINDOW).is_err(),
                "{regrouped}"
            );
        }
    }

    #[test]
    fn shop_domains() {
        for good in [
            "a.myshopify.com",
            "shop-name.myshopify.com",
            "a1.myshopify.com",
        ] {
            assert!(valid_shop_domain(good), "{good}");
        }
        for bad in [
            ".myshopify.com",
            "a.b.myshopify.com",
            "a_b.myshopify.com",
            "a.myshopify.com.",
            "a.myshopify.co",
            "myshopify.com",
            "a-.myshopify.com",
            &format!("{}.myshopify.com", "a".repeat(64)),
        ] {
            assert!(!valid_shop_domain(bad), "{bad}");
        }
    }
}
