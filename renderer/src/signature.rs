//! Shopify app-proxy signatures.
//!
//! The storefront reaches the renderer through Shopify's app proxy, which appends
//! `shop`, `logged_in_customer_id`, `path_prefix`, `timestamp` and a `signature` to the
//! query string. The signature is the documented scheme: every query parameter except
//! `signature`, as `key=value` (several values of one key joined by commas), sorted by
//! key, concatenated with no separator, HMAC-SHA256 with the app's API secret, hex.
//! Checking it is what lets the renderer trust the `shop` parameter.

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `signature` parameter.
    #[error("missing app-proxy signature")]
    Missing,
    /// `signature` is not hex, or does not match.
    #[error("invalid app-proxy signature")]
    Invalid,
    /// The signature matched but no `shop` was signed.
    #[error("signed query has no shop parameter")]
    NoShop,
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

/// Verifies the app-proxy signature of a raw query string and returns the signed shop.
/// The comparison is constant-time.
pub fn verify(query: &str, secret: &str) -> Result<String, SignatureError> {
    let params = grouped(query);
    let signature = params
        .get("signature")
        .and_then(|values| values.first())
        .ok_or(SignatureError::Missing)?;
    let expected = hex::decode(signature).map_err(|_| SignatureError::Invalid)?;
    let mut mac = mac(secret);
    mac.update(message(&params).as_bytes());
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Invalid)?;
    params
        .get("shop")
        .and_then(|values| values.first())
        .filter(|shop| !shop.is_empty())
        .cloned()
        .ok_or(SignatureError::NoShop)
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

    /// The example from Shopify's app-proxy documentation (the docs show the shop as
    /// `{shop}`; the signature is for `shop-name.myshopify.com`).
    #[test]
    fn shopify_documented_example_verifies() {
        let query = "extra=1&extra=2&shop=shop-name.myshopify.com&logged_in_customer_id=1\
                     &path_prefix=%2Fapps%2Fawesome_reviews&timestamp=1317327555\
                     &signature=4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb";
        assert_eq!(verify(query, "hush").unwrap(), "shop-name.myshopify.com");
    }

    #[test]
    fn a_tampered_query_is_refused() {
        let query = "shop=a.myshopify.com&timestamp=1";
        let signature = sign(query, "secret");
        let good = format!("{query}&signature={signature}");
        assert_eq!(verify(&good, "secret").unwrap(), "a.myshopify.com");
        let tampered = good.replace("a.myshopify", "b.myshopify");
        assert_eq!(verify(&tampered, "secret"), Err(SignatureError::Invalid));
        assert_eq!(verify(&good, "other"), Err(SignatureError::Invalid));
        assert_eq!(verify(query, "secret"), Err(SignatureError::Missing));
        assert_eq!(
            verify("shop=a&signature=zz", "secret"),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn a_signed_query_without_shop_is_refused() {
        let query = "timestamp=1";
        let signed = format!("{query}&signature={}", sign(query, "s"));
        assert_eq!(verify(&signed, "s"), Err(SignatureError::NoShop));
    }
}
