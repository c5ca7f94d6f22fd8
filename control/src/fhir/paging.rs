//! What every FHIR search shares: its query parameters read once (repeats kept, the result
//! parameters `_count`, `_cursor` and `_include` taken out), the opaque cursor of a page, and
//! the `self` and `next` links that repeat the search.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::OffsetDateTime;
use uuid::Uuid;

use super::routes::urlencode;

/// Results per page unless `_count` says otherwise, and the most `_count` may ask for.
pub const DEFAULT_COUNT: i64 = 50;
pub const MAX_COUNT: i64 = 200;

/// Why a search request is refused (a 400 OperationOutcome with this text).
pub type Refusal = String;

/// A search's parameters. `used` are those the search applied, in request order, for the
/// links; unknown ones are refused or, under `Prefer: handling=lenient`, left out of them.
#[derive(Debug, Default)]
pub struct SearchRequest {
    pub count: i64,
    /// The sort key and id of the row the page begins after.
    pub cursor: Option<(String, Uuid)>,
    pub includes: Vec<String>,
    pub used: Vec<(String, String)>,
}

impl SearchRequest {
    /// Reads `params`: `known` names the search parameters this resource type supports,
    /// `includes` the `_include` values it accepts.
    pub fn read(
        params: &[(String, String)],
        known: &[&str],
        includes: &[&str],
        lenient: bool,
    ) -> Result<SearchRequest, Refusal> {
        let mut request = SearchRequest { count: DEFAULT_COUNT, ..Default::default() };
        for (name, value) in params {
            match name.as_str() {
                "_count" => {
                    request.count =
                        value.parse().ok().filter(|c| (1..=MAX_COUNT).contains(c)).ok_or_else(|| {
                            format!("_count must be a whole number from 1 to {MAX_COUNT}, not {value:?}")
                        })?
                }
                "_cursor" => {
                    request.cursor = Some(parse_cursor(value).ok_or_else(|| {
                        "_cursor is not one this server gave (follow the Bundle's next link)".to_string()
                    })?);
                    continue;
                }
                "_include" if includes.contains(&value.as_str()) => request.includes.push(value.clone()),
                "_include" => {
                    return Err(format!(
                        "_include={value} is not supported here (supported: {})",
                        if includes.is_empty() { "none".to_string() } else { includes.join(", ") }
                    ));
                }
                // The response format is always JSON.
                "_format" => {}
                n if known.contains(&n) => {}
                _ if lenient => continue,
                unknown => {
                    return Err(format!(
                        "unknown or unsupported search parameter {unknown:?} (supported: {}; see /fhir/R4/metadata)",
                        known.join(", ")
                    ));
                }
            }
            request.used.push((name.clone(), value.clone()));
        }
        Ok(request)
    }

    /// The values of one parameter, in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.used.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The one value of a parameter that may be given once.
    pub fn single<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, Refusal> {
        let mut values = self.values(name);
        let first = values.next();
        if values.next().is_some() {
            return Err(format!("give {name} at most once"));
        }
        Ok(first)
    }

    /// The search's URL under `base` (ending in the resource type), on the page after `cursor`.
    pub fn link(&self, base: &str, cursor: Option<&str>) -> String {
        let mut pairs: Vec<String> =
            self.used.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect();
        if let Some(c) = cursor {
            pairs.push(format!("_cursor={c}"));
        }
        if pairs.is_empty() { base.to_string() } else { format!("{base}?{}", pairs.join("&")) }
    }

    /// The time cursor of a search in start order.
    pub fn time_cursor(&self) -> Result<Option<(OffsetDateTime, Uuid)>, Refusal> {
        self.cursor
            .as_ref()
            .map(|(key, id)| {
                key.parse::<i128>()
                    .ok()
                    .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok())
                    .map(|t| (t, *id))
                    .ok_or_else(|| "_cursor is not one this server gave (follow the Bundle's next link)".to_string())
            })
            .transpose()
    }
}

/// The opaque cursor of the page after a row with this sort key and id.
pub fn cursor(key: &str, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{id}{key}"))
}

/// The cursor of the page after an appointment (start order).
pub fn time_cursor(start: OffsetDateTime, id: Uuid) -> String {
    cursor(&start.unix_timestamp_nanos().to_string(), id)
}

fn parse_cursor(text: &str) -> Option<(String, Uuid)> {
    let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    // A hyphenated UUID is 36 ASCII characters; the sort key follows.
    let id = Uuid::parse_str(text.get(..36)?).ok()?;
    // Keys are stored text: never a NUL (which PostgreSQL refuses).
    Some((text[36..].to_string(), id)).filter(|(key, _)| !key.contains('\0'))
}

/// Whether the request asks to ignore parameters the server does not know (FHIR R4, 3.1.1.5.9).
pub fn lenient(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .any(|p| p.trim().eq_ignore_ascii_case("handling=lenient"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = Uuid::new_v4();
        let c = cursor("Dr. Elif Kaya", id);
        let r = SearchRequest::read(&params(&[("_cursor", &c)]), &[], &[], false).unwrap();
        assert_eq!(r.cursor, Some(("Dr. Elif Kaya".to_string(), id)));
        let t = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let r = SearchRequest::read(&params(&[("_cursor", &time_cursor(t, id))]), &[], &[], false).unwrap();
        assert_eq!(r.time_cursor().unwrap(), Some((t, id)));
        for bad in ["", "!!", "bm90IGEgY3Vyc29y"] {
            let e = SearchRequest::read(&params(&[("_cursor", bad)]), &[], &[], false).unwrap_err();
            assert!(e.contains("_cursor"), "{bad}: {e}");
        }
        let not_a_time = SearchRequest::read(&params(&[("_cursor", &c)]), &[], &[], false).unwrap();
        assert!(not_a_time.time_cursor().is_err());
    }

    #[test]
    fn unknown_parameters_are_named_unless_lenient() {
        let p = params(&[("name", "ka"), ("colour", "blue"), ("_count", "5")]);
        let e = SearchRequest::read(&p, &["name"], &[], false).unwrap_err();
        assert!(e.contains("\"colour\""), "{e}");
        let r = SearchRequest::read(&p, &["name"], &[], true).unwrap();
        assert_eq!(r.count, 5);
        assert_eq!(r.link("http://x/fhir/R4/Practitioner", None), "http://x/fhir/R4/Practitioner?name=ka&_count=5");
        for count in ["0", "201", "many"] {
            assert!(
                SearchRequest::read(&params(&[("_count", count)]), &[], &[], false).unwrap_err().contains("_count")
            );
        }
        let e =
            SearchRequest::read(&params(&[("_include", "Appointment:location")]), &[], &["Appointment:patient"], false)
                .unwrap_err();
        assert!(e.contains("Appointment:location"), "{e}");
    }

    #[test]
    fn prefer_lenient_is_read_among_other_preferences() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!lenient(&h));
        h.insert("prefer", "return=minimal, handling=lenient".parse().unwrap());
        assert!(lenient(&h));
        h.insert("prefer", "handling=strict".parse().unwrap());
        assert!(!lenient(&h));
    }
}
