//! FHIR search parameters the Slot search understands: `date` values with comparison prefixes
//! (`ge2027-03-14`, `lt2027-03-15T12:00:00Z`), turned into a half-open time range.

use jiff::Timestamp;
use jiff::civil::Date;

/// A FHIR date search value names a period, not an instant: `2027-03-14` is that whole day.
/// A value whose period leaves the representable time range is refused with a message naming
/// the value, never with the time library's own (issue 18, item 10).
fn period(value: &str) -> Result<(Timestamp, Timestamp), String> {
    let out_of_range = || format!("{value:?} is outside the supported dates");
    if let Ok(t) = value.parse::<Timestamp>() {
        return Ok((t, t.checked_add(jiff::SignedDuration::from_nanos(1)).map_err(|_| out_of_range())?));
    }
    let day: Date = value.parse().map_err(|_| format!("{value:?} is not a FHIR date (YYYY-MM-DD or an instant)"))?;
    // A date without a zone is read in UTC (the server's zone).
    let utc = |d: Date| d.to_zoned(jiff::tz::TimeZone::UTC).map(|z| z.timestamp()).map_err(|_| out_of_range());
    let start = utc(day)?;
    let end = utc(day.tomorrow().map_err(|_| out_of_range())?)?;
    Ok((start, end))
}

/// The range `[from, to)` that every `start` value together allows. Missing bounds are `None`.
pub fn start_range(values: &[String]) -> Result<(Option<Timestamp>, Option<Timestamp>), String> {
    let (mut from, mut to): (Option<Timestamp>, Option<Timestamp>) = (None, None);
    let mut lower = |t: Timestamp| from = Some(from.map_or(t, |f| f.max(t)));
    let mut upper_bounds = Vec::new();
    for v in values {
        let (prefix, rest) = match v.get(..2) {
            Some(p @ ("ge" | "gt" | "le" | "lt" | "eq")) => (p, &v[2..]),
            Some(p @ ("ne" | "sa" | "eb" | "ap")) => return Err(format!("the prefix {p} is not supported on start")),
            _ => ("eq", v.as_str()),
        };
        let (lo, hi) = period(rest)?;
        match prefix {
            "ge" => lower(lo),
            "gt" => lower(hi),
            "lt" => upper_bounds.push(lo),
            "le" => upper_bounds.push(hi),
            _ => {
                lower(lo);
                upper_bounds.push(hi);
            }
        }
    }
    for t in upper_bounds {
        to = Some(to.map_or(t, |u: Timestamp| u.min(t)));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_bare_date_is_the_whole_utc_day() {
        let (from, to) = start_range(&["2027-03-14".into()]).unwrap();
        assert_eq!((from, to), (Some(ts("2027-03-14T00:00:00Z")), Some(ts("2027-03-15T00:00:00Z"))));
    }

    #[test]
    fn prefixes_combine_into_the_narrowest_range() {
        let (from, to) = start_range(&["ge2027-03-14".into(), "lt2027-03-16T12:00:00Z".into()]).unwrap();
        assert_eq!((from, to), (Some(ts("2027-03-14T00:00:00Z")), Some(ts("2027-03-16T12:00:00Z"))));
        let (from, to) = start_range(&["gt2027-03-14".into(), "le2027-03-20".into()]).unwrap();
        assert_eq!((from, to), (Some(ts("2027-03-15T00:00:00Z")), Some(ts("2027-03-21T00:00:00Z"))));
        assert_eq!(start_range(&[]).unwrap(), (None, None));
    }

    #[test]
    fn dates_at_the_end_of_time_are_refused_by_name() {
        let e = start_range(&["ge9999-12-31".into()]).unwrap_err();
        assert!(e.contains("9999-12-31") && e.contains("outside the supported dates"), "{e}");
    }

    #[test]
    fn unsupported_prefixes_and_garbage_are_refused() {
        assert!(start_range(&["ne2027-03-14".into()]).unwrap_err().contains("ne"));
        assert!(start_range(&["tomorrow".into()]).is_err());
    }
}
