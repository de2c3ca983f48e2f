//! Query strings read strictly: [`Params<T>`] answers 400 `unknown_parameter` for any
//! name `T` does not read (a misspelt `statuss=failed` would otherwise be ignored and
//! answer everything) and 400 `bad_parameter` for a name given twice (which of the two
//! would be meant is a guess), before `T` is read as axum's `Query` reads it.
//!
//! The names `T` reads are not listed by hand, where they could drift from the
//! struct: they are the field names serde's derive hands to `deserialize_struct`
//! (renames applied), caught by a deserializer that reads nothing ([`accepted`]). So a
//! parameter struct must be a plain struct with named fields (no `flatten`), which the
//! tests below check for every one of them.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::Uri;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::Deserialize;

use crate::http::AppError;

/// Longest unknown name quoted back in a refusal (longer ones are cut with `…`).
pub const MAX_QUOTED_NAME_CHARS: usize = 64;

/// A resource's query string, every name known (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        read(&parts.uri).map(Params)
    }
}

/// The query string of a route that reads none: any parameter is refused.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct NoParams {}

/// `T` from the query of `uri`, every name known and none repeated.
pub fn read<T: DeserializeOwned>(uri: &Uri) -> Result<T, AppError> {
    let accepted = accepted::<T>();
    let mut given: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(name, _)| name.into_owned())
        .collect();
    given.sort();
    let mut unknown: Vec<String> = given
        .iter()
        .filter(|name| !accepted.contains(&name.as_str()))
        .map(|name| quoted(name))
        .collect();
    unknown.dedup();
    if !unknown.is_empty() {
        return Err(AppError::UnknownParameters { unknown, accepted });
    }
    if let Some(twice) = given.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(AppError::BadRequest(format!(
            "{} must be given at most once",
            twice[0]
        )));
    }
    Query::<T>::try_from_uri(uri)
        .map(|Query(params)| params)
        .map_err(|rejection| AppError::BadRequest(rejection.body_text()))
}

/// `name` (shown as `""` when empty), cut to [`MAX_QUOTED_NAME_CHARS`].
fn quoted(name: &str) -> String {
    if name.is_empty() {
        return "\"\"".to_owned();
    }
    if name.chars().count() <= MAX_QUOTED_NAME_CHARS {
        return name.to_owned();
    }
    name.chars().take(MAX_QUOTED_NAME_CHARS).collect::<String>() + "…"
}

/// The parameter names `T` reads: the fields its derived `Deserialize` names.
pub fn accepted<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut probe = FieldsProbe(None);
    // The probe always answers an error: all it wants is the field list.
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

/// A deserializer that reads nothing and notes the fields a struct asks for.
struct FieldsProbe(Option<&'static [&'static str]>);

/// What [`FieldsProbe`] answers every request with.
#[derive(Debug)]
struct Probed;

impl std::fmt::Display for Probed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names probed")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Probed
    }
}

impl<'de> Deserializer<'de> for &mut FieldsProbe {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Probed> {
        self.0 = Some(fields);
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::auth::LoginQuery;
    use crate::monitor::dead_letters::DeadLettersParams;
    use crate::monitor::errors::{ErrorGroupsParams, ErrorsPageParams};
    use crate::monitor::events::EventsParams;
    use crate::monitor::overview::{OverviewParams, StatsParams};
    use crate::monitor::runs::RunsParams;

    fn uri(query: &str) -> Uri {
        format!("/x?{query}").parse().unwrap()
    }

    #[test]
    fn every_parameter_struct_names_its_fields() {
        assert_eq!(
            accepted::<RunsParams>(),
            [
                "shop",
                "status",
                "model",
                "prompt_pack_version",
                "error_code",
                "min_duration_ms",
                "max_duration_ms",
                "range",
                "from",
                "to",
                "q",
                "sort",
                "limit",
                "cursor"
            ]
        );
        assert_eq!(
            accepted::<EventsParams>(),
            [
                "type",
                "source",
                "shop",
                "request_id",
                "range",
                "from",
                "to",
                "limit",
                "cursor"
            ]
        );
        assert_eq!(accepted::<DeadLettersParams>(), ["limit", "cursor"]);
        assert_eq!(accepted::<StatsParams>(), ["window", "from", "to", "model"]);
        assert_eq!(
            accepted::<OverviewParams>(),
            ["window", "from", "to", "model", "refresh"]
        );
        assert_eq!(
            accepted::<ErrorGroupsParams>(),
            ["window", "from", "to", "model"]
        );
        assert_eq!(
            accepted::<ErrorsPageParams>(),
            ["window", "from", "to", "model", "error_code", "error_group"]
        );
        assert_eq!(accepted::<LoginQuery>(), ["next"]);
        assert!(accepted::<NoParams>().is_empty());
    }

    #[test]
    fn unknown_and_repeated_names_are_refused_known_ones_read() {
        let read_runs = |query: &str| read::<RunsParams>(&uri(query));
        let runs = read_runs("status=failed&shop=&limit=5").unwrap();
        assert_eq!(runs.status.as_deref(), Some("failed"));
        assert_eq!(runs.limit.as_deref(), Some("5"));
        match read_runs("statuss=failed&status=failed&zz=1&zz=2") {
            Err(AppError::UnknownParameters {
                unknown,
                accepted: listed,
            }) => {
                assert_eq!(unknown, ["statuss", "zz"]);
                assert_eq!(listed, accepted::<RunsParams>());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_runs("status=a&status=b"),
            Err(AppError::BadRequest(reason)) if reason == "status must be given at most once"
        ));
        let long = "x".repeat(MAX_QUOTED_NAME_CHARS + 10);
        match read::<NoParams>(&uri(&format!("{long}=1&=2"))) {
            Err(AppError::UnknownParameters {
                unknown,
                accepted: listed,
            }) => {
                assert_eq!(unknown.len(), 2);
                assert_eq!(unknown[0], "\"\"");
                assert!(unknown[1].ends_with('…') && unknown[1].len() < long.len());
                assert!(listed.is_empty());
            }
            other => panic!("{other:?}"),
        }
        read::<NoParams>(&"/x".parse().unwrap()).unwrap();
    }
}
