//! Free slots of a practitioner: weekly rules in the practitioner's own time zone, exceptions
//! (leave, extra hours) and booked intervals, over a bounded range of absolute time.
//!
//! Pure: no database, no clock, no I/O. The caller loads the practitioner's zone, rules,
//! exceptions and booked appointments and asks [`free_slots`] for a range.
//!
//! # Time zones and daylight saving time
//!
//! A [`WeeklyRule`] is wall-clock time in the practitioner's zone ("Mondays 09:00–17:00 in
//! Europe/Berlin"); everything else is absolute ([`Timestamp`]). For each local date that the
//! range touches, each rule for that date's weekday becomes one *window* of absolute time:
//!
//! - The window starts at the first instant the practitioner's wall clock reads `from` on that
//!   date and ends at the first instant it reads `to`:
//!   - a wall-clock time that happens twice (the autumn fall-back overlap) is taken at its
//!     **first** occurrence, for either end;
//!   - a wall-clock time that never happens (the spring-forward gap) is taken as the **instant of
//!     the transition**, the first instant at which the wall clock has passed it.
//! - Slots are then laid **in absolute time**, back to back from the window's start, each exactly
//!   `slot_minutes` of real time long, as many as fit wholly before the window's end.
//!
//! What this gives (America/New_York, a 01:00–04:00 rule with 30-minute slots):
//!
//! - Spring-forward day (02:00 EST becomes 03:00 EDT): window 06:00Z–08:00Z, two real hours,
//!   four slots at 01:00 and 01:30 EST, 03:00 and 03:30 EDT. The nominal 02:00 and 02:30 slots
//!   would start in the gap and are skipped; no slot is shortened or moved onto another. A rule
//!   starting at 02:30 starts at 03:00 EDT, the first moment the clock shows 02:30 or later.
//! - Fall-back day (02:00 EDT becomes 01:00 EST): window 05:00Z (01:00 EDT) to 09:00Z (04:00 EST),
//!   four real hours, eight slots: 01:00 and 01:30 happen twice on the wall clock and are offered
//!   twice, because the practitioner is really at work during both.
//! - A 09:00–17:00 rule gives eight real hours on every day, change days included.
//! - A slot length that does not divide the gap (45 minutes, spring day) gives slots off the
//!   wall-clock grid after the gap (01:00 EST, 01:45 EST, and 03:30 EDT no longer fits before
//!   04:00). Keeping the wall-clock grid instead would make slots overlap (01:45 EST ends at
//!   03:30 EDT, after a 03:15 EDT slot has begun) or shorten them; real-time length wins.
//!
//! Rejected alternatives: laying slot starts on the wall-clock grid and converting each one would,
//! on the fall-back day, either offer the repeated hour once (six slots for four hours worked) or
//! produce overlapping slots; jiff's "compatible" conversion of gap times would move a rule
//! starting at 02:30 to 03:30 EDT and lose the 03:00 EDT slot.
//!
//! A rule's `from` and `to` are on the same local date (`from < to`), so a rule cannot run past
//! local midnight; two rules express that.
//!
//! # Exceptions, bookings, range
//!
//! - [`Exception::ExtraHours`] adds slots laid back to back from its own `from`, in absolute time.
//! - [`Exception::Unavailable`] and [`Busy`] remove every slot that overlaps them. All intervals
//!   are half-open, so a slot that ends exactly when a booking starts, or starts when it ends,
//!   stays.
//! - Only slots wholly inside the requested `[from, to)` are returned, sorted by start then end,
//!   without exact duplicates. Distinct slots from differently aligned sources (two overlapping
//!   rules, or a rule and extra hours) may overlap each other; both are offered, and booking one
//!   makes the other busy.

use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Shortest slot a rule or extra hours may have, in minutes.
pub const MIN_SLOT_MINUTES: u32 = 5;
/// Longest slot a rule or extra hours may have, in minutes.
pub const MAX_SLOT_MINUTES: u32 = 240;
/// Longest range [`free_slots`] computes, in days of 24 hours.
pub const MAX_RANGE_DAYS: i64 = 62;

/// Recurring weekly working hours, in the practitioner's local wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WeeklyRule {
    /// Day of the week: "monday" … "sunday" (any case).
    #[serde(with = "weekday_name")]
    #[schema(value_type = String, example = "monday",
        pattern = "^([Mm][Oo][Nn]|[Tt][Uu][Ee][Ss]|[Ww][Ee][Dd][Nn][Ee][Ss]|[Tt][Hh][Uu][Rr][Ss]|[Ff][Rr][Ii]|[Ss][Aa][Tt][Uu][Rr]|[Ss][Uu][Nn])[Dd][Aa][Yy]$")]
    pub weekday: Weekday,
    /// Local start, inclusive ("09:00" or "09:00:00").
    #[schema(value_type = String, example = "09:00:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")]
    pub from: Time,
    /// Local end, exclusive; after `from` on the same date.
    #[schema(value_type = String, example = "17:00:00", pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")]
    pub to: Time,
    /// Length of each slot, 5 to 240 minutes.
    #[serde(deserialize_with = "crate::problem::whole")]
    #[schema(example = 30, minimum = 5, maximum = 240)]
    pub slot_minutes: u32,
}

/// A one-off change to the weekly rules, in absolute time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Exception {
    /// Leave: no slot overlapping `[from, to)` is offered.
    Unavailable {
        #[schema(value_type = String, format = DateTime, example = "2026-03-09T00:00:00Z")]
        from: Timestamp,
        #[schema(value_type = String, format = DateTime, example = "2026-03-14T00:00:00Z")]
        to: Timestamp,
    },
    /// Extra hours: slots laid back to back from `from`, as many as fit before `to`.
    ExtraHours {
        #[schema(value_type = String, format = DateTime, example = "2026-03-07T07:00:00Z")]
        from: Timestamp,
        #[schema(value_type = String, format = DateTime, example = "2026-03-07T10:00:00Z")]
        to: Timestamp,
        /// Length of each slot, 5 to 240 minutes.
        #[serde(rename = "slotMinutes", deserialize_with = "crate::problem::whole")]
        #[schema(example = 30, minimum = 5, maximum = 240)]
        slot_minutes: u32,
    },
}

/// Time already taken, `[from, to)`: a booked appointment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Busy {
    #[schema(value_type = String, format = DateTime)]
    pub from: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub to: Timestamp,
}

/// A free slot, `[start, end)`. Ordered by start, then end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Slot {
    #[schema(value_type = String, format = DateTime, example = "2026-03-08T06:00:00Z")]
    pub start: Timestamp,
    #[schema(value_type = String, format = DateTime, example = "2026-03-08T06:30:00Z")]
    pub end: Timestamp,
}

/// Why [`free_slots`] refused its input.
#[derive(Debug, thiserror::Error)]
pub enum AvailabilityError {
    #[error("slot length must be between {} and {} minutes, got {minutes}", MIN_SLOT_MINUTES, MAX_SLOT_MINUTES)]
    SlotLength { minutes: u32 },
    #[error("weekly rule {index}: `from` ({from}) must be before `to` ({to})")]
    EmptyRule { index: usize, from: Time, to: Time },
    #[error("exception {index}: `from` ({from}) must be before `to` ({to})")]
    EmptyException { index: usize, from: Timestamp, to: Timestamp },
    #[error("busy interval {index}: `from` ({from}) must be before `to` ({to})")]
    EmptyBusy { index: usize, from: Timestamp, to: Timestamp },
    #[error("range: `from` ({from}) must be before `to` ({to})")]
    EmptyRange { from: Timestamp, to: Timestamp },
    #[error("range from {from} to {to} is longer than {} days", MAX_RANGE_DAYS)]
    RangeTooLong { from: Timestamp, to: Timestamp },
    #[error("time outside the supported range: {0}")]
    OutOfRange(#[from] jiff::Error),
}

/// The free slots of a practitioner in `[from, to)`: slots from `rules` (local time in `zone`)
/// and from extra hours, minus those overlapping leave or `busy`, sorted, without duplicates.
/// See the module documentation for how daylight-saving transitions are handled.
pub fn free_slots(
    zone: &TimeZone,
    rules: &[WeeklyRule],
    exceptions: &[Exception],
    busy: &[Busy],
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<Slot>, AvailabilityError> {
    Ok(free_slots_page(zone, rules, exceptions, busy, from, to, None, usize::MAX)?.slots)
}

/// One page of [`free_slots`]: at most `limit` slots, those after `after` (in slot order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub slots: Vec<Slot>,
    /// Whether slots follow the last one given (ask again with it as `after`).
    pub more: bool,
}

/// [`free_slots`], one page at a time, computed one local date after another and stopping as
/// soon as the page is full: the work and memory of a request are bounded by `limit` and one
/// day's slots, not by the range (security issue 18, item 2: a 62-day range of 867 rules used
/// to be materialised whole, a million slots, before anything was answered).
///
/// Every slot of a rule on local date D starts in `[midnight(D), midnight(D+1))` (a rule's
/// window lies within its date), so laying each date's slots, and the extra hours' slots that
/// start in that span, gives the slots in order date by date.
#[allow(clippy::too_many_arguments)]
pub fn free_slots_page(
    zone: &TimeZone,
    rules: &[WeeklyRule],
    exceptions: &[Exception],
    busy: &[Busy],
    from: Timestamp,
    to: Timestamp,
    after: Option<Slot>,
    limit: usize,
) -> Result<Page, AvailabilityError> {
    validate(rules, exceptions, busy, from, to)?;
    let blocked = blocked_intervals(exceptions, busy);
    let mut page = Vec::new();
    let mut day = Vec::new();
    let last = zone.to_datetime(to).date();
    // Dates wholly before the cursor hold nothing for this page: start at the cursor's date.
    let resume = after.map_or(from, |slot| slot.start.max(from));
    let mut date = zone.to_datetime(resume).date();
    loop {
        let day_start = wall_clock_instant(zone, date.to_datetime(Time::midnight()))?;
        let next = date.tomorrow()?;
        let day_end = wall_clock_instant(zone, next.to_datetime(Time::midnight()))?;
        let starts = (from.max(day_start), day_end);
        day.clear();
        let weekday = date.weekday();
        for rule in rules.iter().filter(|rule| rule.weekday == weekday) {
            let start = wall_clock_instant(zone, date.to_datetime(rule.from))?;
            let end = wall_clock_instant(zone, date.to_datetime(rule.to))?;
            lay_slots(start, end, rule.slot_minutes, starts, to, &mut day);
        }
        for exception in exceptions {
            if let Exception::ExtraHours { from: start, to: end, slot_minutes } = *exception {
                lay_slots(start, end, slot_minutes, starts, to, &mut day);
            }
        }
        day.retain(|slot| !overlaps_any(&blocked, slot) && after.is_none_or(|after| *slot > after));
        day.sort_unstable();
        day.dedup();
        for slot in &day {
            if page.len() == limit {
                return Ok(Page { slots: page, more: true });
            }
            page.push(*slot);
        }
        if date >= last {
            break;
        }
        date = next;
    }
    Ok(Page { slots: page, more: false })
}

fn validate(
    rules: &[WeeklyRule],
    exceptions: &[Exception],
    busy: &[Busy],
    from: Timestamp,
    to: Timestamp,
) -> Result<(), AvailabilityError> {
    let slot_length = |minutes: u32| {
        if (MIN_SLOT_MINUTES..=MAX_SLOT_MINUTES).contains(&minutes) {
            Ok(())
        } else {
            Err(AvailabilityError::SlotLength { minutes })
        }
    };
    if from >= to {
        return Err(AvailabilityError::EmptyRange { from, to });
    }
    if to.duration_since(from) > SignedDuration::from_hours(MAX_RANGE_DAYS * 24) {
        return Err(AvailabilityError::RangeTooLong { from, to });
    }
    for (index, rule) in rules.iter().enumerate() {
        slot_length(rule.slot_minutes)?;
        if rule.from >= rule.to {
            return Err(AvailabilityError::EmptyRule { index, from: rule.from, to: rule.to });
        }
    }
    for (index, exception) in exceptions.iter().enumerate() {
        let (start, end) = match *exception {
            Exception::Unavailable { from, to } => (from, to),
            Exception::ExtraHours { from, to, slot_minutes } => {
                slot_length(slot_minutes)?;
                (from, to)
            }
        };
        if start >= end {
            return Err(AvailabilityError::EmptyException { index, from: start, to: end });
        }
    }
    for (index, interval) in busy.iter().enumerate() {
        if interval.from >= interval.to {
            return Err(AvailabilityError::EmptyBusy { index, from: interval.from, to: interval.to });
        }
    }
    Ok(())
}

/// The first instant at which the wall clock of `zone` reads `dt`: the first occurrence in a fold,
/// and the transition instant (the first at which the clock has passed `dt`) in a gap.
fn wall_clock_instant(zone: &TimeZone, dt: DateTime) -> Result<Timestamp, jiff::Error> {
    let ambiguous = zone.to_ambiguous_timestamp(dt);
    match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => ambiguous.earlier(),
        AmbiguousOffset::Gap { .. } => {
            // `dt` read with the offset after the gap is an instant before the transition
            // (the clock had not reached `dt` yet); the next transition is the gap's start.
            let before_gap = ambiguous.earlier()?;
            match zone.following(before_gap).next() {
                Some(transition) => Ok(transition.timestamp()),
                None => ambiguous.later(),
            }
        }
    }
}

/// Appends the slots `origin + k·len` (k ≥ 0) that lie wholly inside both `[origin, end)` and
/// `[starts.0, range_to)` and start before `starts.1`. Work is proportional to the slots
/// appended, not to how far `origin` lies before the range.
fn lay_slots(
    origin: Timestamp,
    end: Timestamp,
    minutes: u32,
    starts: (Timestamp, Timestamp),
    range_to: Timestamp,
    out: &mut Vec<Slot>,
) {
    let (range_from, starts_before) = starts;
    let len = SignedDuration::from_mins(i64::from(minutes));
    let limit = end.min(range_to);
    let mut start = origin;
    if origin < range_from {
        let behind = range_from.duration_since(origin).as_nanos();
        let step = len.as_nanos();
        let skip = (behind + step - 1) / step;
        // Overflow here means the first slot would start past any representable instant,
        // hence past `range_to`: nothing fits.
        let Some(skip_minutes) = i64::try_from(skip)
            .ok()
            .and_then(|skip| skip.checked_mul(i64::from(minutes)))
            .filter(|&total| total <= i64::MAX / 60)
        else {
            return;
        };
        match origin.checked_add(SignedDuration::from_mins(skip_minutes)) {
            Ok(first) => start = first,
            Err(_) => return,
        }
    }
    while let Ok(slot_end) = start.checked_add(len) {
        if slot_end > limit || start >= starts_before {
            break;
        }
        out.push(Slot { start, end: slot_end });
        start = slot_end;
    }
}

/// Leave and busy intervals, sorted and merged into disjoint intervals (so that their ends are
/// sorted too).
fn blocked_intervals(exceptions: &[Exception], busy: &[Busy]) -> Vec<(Timestamp, Timestamp)> {
    let mut intervals: Vec<(Timestamp, Timestamp)> = exceptions
        .iter()
        .filter_map(|exception| match *exception {
            Exception::Unavailable { from, to } => Some((from, to)),
            Exception::ExtraHours { .. } => None,
        })
        .chain(busy.iter().map(|interval| (interval.from, interval.to)))
        .collect();
    intervals.sort_unstable();
    let mut merged: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(intervals.len());
    for (from, to) in intervals {
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    merged
}

/// Whether `slot` overlaps any of the disjoint, sorted, half-open `blocked` intervals.
fn overlaps_any(blocked: &[(Timestamp, Timestamp)], slot: &Slot) -> bool {
    // The first interval ending after the slot starts is the only candidate: those before it
    // end at or before the slot's start, and those after it start after it.
    let candidate = blocked.partition_point(|&(_, to)| to <= slot.start);
    blocked.get(candidate).is_some_and(|&(from, _)| from < slot.end)
}

/// Serde for [`Weekday`] as its lowercase English name.
mod weekday_name {
    use jiff::civil::Weekday;
    use serde::de::{Deserializer, Error, Unexpected};
    use serde::{Deserialize, Serializer};

    fn name(weekday: Weekday) -> &'static str {
        match weekday {
            Weekday::Monday => "monday",
            Weekday::Tuesday => "tuesday",
            Weekday::Wednesday => "wednesday",
            Weekday::Thursday => "thursday",
            Weekday::Friday => "friday",
            Weekday::Saturday => "saturday",
            Weekday::Sunday => "sunday",
        }
    }

    pub fn serialize<S: Serializer>(weekday: &Weekday, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(name(*weekday))
    }

    /// Accepts the English name in any case.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Weekday, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Weekday::Monday
            .cycle_forward()
            .take(7)
            .find(|&day| name(day).eq_ignore_ascii_case(&text))
            .ok_or_else(|| D::Error::invalid_value(Unexpected::Str(&text), &"a weekday name such as \"monday\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::time;

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap_or_else(|err| panic!("bad timestamp {text}: {err}"))
    }

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap_or_else(|err| panic!("zone {name}: {err}"))
    }

    fn rule(weekday: Weekday, from: (i8, i8), to: (i8, i8), slot_minutes: u32) -> WeeklyRule {
        WeeklyRule { weekday, from: time(from.0, from.1, 0, 0), to: time(to.0, to.1, 0, 0), slot_minutes }
    }

    fn busy(from: &str, to: &str) -> Busy {
        Busy { from: ts(from), to: ts(to) }
    }

    /// The slots' starts as RFC 3339 UTC strings, after checking each slot is `minutes` long.
    fn starts(slots: &[Slot], minutes: i64) -> Vec<String> {
        for slot in slots {
            assert_eq!(slot.end.duration_since(slot.start), SignedDuration::from_mins(minutes), "{slot:?}");
        }
        slots.iter().map(|slot| slot.start.to_string()).collect()
    }

    /// The slots' starts as local wall-clock times with offset, in `zone`.
    fn local(slots: &[Slot], zone: &TimeZone) -> Vec<String> {
        slots.iter().map(|slot| slot.start.to_zoned(zone.clone()).strftime("%Y-%m-%d %H:%M %:z").to_string()).collect()
    }

    fn free(
        zone: &TimeZone,
        rules: &[WeeklyRule],
        exceptions: &[Exception],
        busy: &[Busy],
        from: &str,
        to: &str,
    ) -> Vec<Slot> {
        free_slots(zone, rules, exceptions, busy, ts(from), ts(to)).expect("valid input")
    }

    #[test]
    fn istanbul_week_lays_rule_slots_at_utc_plus_3_and_clips_at_range_end() {
        let tz = zone("Europe/Istanbul");
        let rules = [
            rule(Weekday::Monday, (9, 0), (12, 0), 60),
            rule(Weekday::Wednesday, (13, 0), (15, 0), 30),
            rule(Weekday::Friday, (16, 0), (17, 0), 20),
        ];
        // Monday 2026-01-05 00:00 to Monday 2026-01-12 00:00, local: the second Monday's slots
        // are outside the range.
        let slots = free(&tz, &rules, &[], &[], "2026-01-04T21:00:00Z", "2026-01-11T21:00:00Z");
        let monday: Vec<_> =
            slots.iter().filter(|slot| slot.end.duration_since(slot.start).as_mins() == 60).copied().collect();
        assert_eq!(starts(&monday, 60), ["2026-01-05T06:00:00Z", "2026-01-05T07:00:00Z", "2026-01-05T08:00:00Z"]);
        let wednesday: Vec<_> =
            slots.iter().filter(|slot| slot.end.duration_since(slot.start).as_mins() == 30).copied().collect();
        assert_eq!(
            starts(&wednesday, 30),
            ["2026-01-07T10:00:00Z", "2026-01-07T10:30:00Z", "2026-01-07T11:00:00Z", "2026-01-07T11:30:00Z"]
        );
        let friday: Vec<_> =
            slots.iter().filter(|slot| slot.end.duration_since(slot.start).as_mins() == 20).copied().collect();
        assert_eq!(starts(&friday, 20), ["2026-01-09T13:00:00Z", "2026-01-09T13:20:00Z", "2026-01-09T13:40:00Z"]);
        assert_eq!(slots.len(), 10);
        assert!(slots.windows(2).all(|pair| pair[0] < pair[1]), "sorted and unique: {slots:?}");
        assert_eq!(local(&slots[..1], &tz), ["2026-01-05 09:00 +03:00"]);

        // A week later, the same local times at the same UTC instants (no DST in Istanbul).
        let july = free(&tz, &rules, &[], &[], "2026-07-05T21:00:00Z", "2026-07-12T21:00:00Z");
        assert_eq!(july.len(), 10);
        assert_eq!(july[0].start, ts("2026-07-06T06:00:00Z"));
    }

    #[test]
    fn new_york_spring_forward_skips_slots_in_the_gap() {
        let tz = zone("America/New_York");
        let rules = [
            rule(Weekday::Saturday, (1, 0), (4, 0), 30),
            rule(Weekday::Sunday, (1, 0), (4, 0), 30),
            rule(Weekday::Monday, (1, 0), (4, 0), 30),
        ];
        // Saturday 2026-03-07 00:00 EST to Tuesday 2026-03-10 00:00 EDT.
        let slots = free(&tz, &rules, &[], &[], "2026-03-07T05:00:00Z", "2026-03-10T04:00:00Z");
        assert_eq!(
            starts(&slots, 30),
            [
                // Saturday, EST (UTC-5): three hours, six slots.
                "2026-03-07T06:00:00Z",
                "2026-03-07T06:30:00Z",
                "2026-03-07T07:00:00Z",
                "2026-03-07T07:30:00Z",
                "2026-03-07T08:00:00Z",
                "2026-03-07T08:30:00Z",
                // Sunday: 01:00 and 01:30 EST, then 03:00 and 03:30 EDT; 02:xx does not exist.
                "2026-03-08T06:00:00Z",
                "2026-03-08T06:30:00Z",
                "2026-03-08T07:00:00Z",
                "2026-03-08T07:30:00Z",
                // Monday, EDT (UTC-4): three hours, six slots.
                "2026-03-09T05:00:00Z",
                "2026-03-09T05:30:00Z",
                "2026-03-09T06:00:00Z",
                "2026-03-09T06:30:00Z",
                "2026-03-09T07:00:00Z",
                "2026-03-09T07:30:00Z",
            ]
        );
        assert_eq!(
            local(&slots[6..10], &tz),
            [
                "2026-03-08 01:00 -05:00",
                "2026-03-08 01:30 -05:00",
                "2026-03-08 03:00 -04:00",
                "2026-03-08 03:30 -04:00"
            ]
        );
    }

    #[test]
    fn new_york_rule_starting_or_lying_in_the_gap() {
        let tz = zone("America/New_York");
        let day = ("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z");
        let sunday = |from, to| free(&tz, &[rule(Weekday::Sunday, from, to, 30)], &[], &[], day.0, day.1);

        // 02:00 and 02:30 never happen: the window starts at the transition, 03:00 EDT.
        let expected = ["2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"];
        assert_eq!(starts(&sunday((2, 0), (4, 0)), 30), expected);
        assert_eq!(starts(&sunday((2, 30), (4, 0)), 30), expected);
        // Entirely inside the gap: nothing.
        assert!(sunday((2, 0), (2, 59)).is_empty());
        // Ending inside the gap: the window ends at the transition.
        assert_eq!(
            starts(&sunday((0, 0), (2, 30)), 30),
            ["2026-03-08T05:00:00Z", "2026-03-08T05:30:00Z", "2026-03-08T06:00:00Z", "2026-03-08T06:30:00Z"]
        );
    }

    #[test]
    fn new_york_slot_length_not_dividing_the_gap_keeps_slots_whole_and_disjoint() {
        let tz = zone("America/New_York");
        let slots = free(
            &tz,
            &[rule(Weekday::Sunday, (1, 0), (4, 0), 45)],
            &[],
            &[],
            "2026-03-08T05:00:00Z",
            "2026-03-09T04:00:00Z",
        );
        // Two real hours, 06:00Z to 08:00Z: two 45-minute slots fit, back to back.
        assert_eq!(starts(&slots, 45), ["2026-03-08T06:00:00Z", "2026-03-08T06:45:00Z"]);
        assert_eq!(local(&slots, &tz), ["2026-03-08 01:00 -05:00", "2026-03-08 01:45 -05:00"]);
    }

    #[test]
    fn new_york_fall_back_offers_the_repeated_hour_twice() {
        let tz = zone("America/New_York");
        let rules = [
            rule(Weekday::Saturday, (1, 0), (4, 0), 30),
            rule(Weekday::Sunday, (1, 0), (4, 0), 30),
            rule(Weekday::Monday, (1, 0), (4, 0), 30),
        ];
        // Saturday 2026-10-31 00:00 EDT to Tuesday 2026-11-03 00:00 EST.
        let slots = free(&tz, &rules, &[], &[], "2026-10-31T04:00:00Z", "2026-11-03T05:00:00Z");
        assert_eq!(
            starts(&slots, 30),
            [
                // Saturday, EDT (UTC-4): six slots.
                "2026-10-31T05:00:00Z",
                "2026-10-31T05:30:00Z",
                "2026-10-31T06:00:00Z",
                "2026-10-31T06:30:00Z",
                "2026-10-31T07:00:00Z",
                "2026-10-31T07:30:00Z",
                // Sunday: from 01:00 EDT (first occurrence) to 04:00 EST, four real hours.
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z",
                "2026-11-01T07:30:00Z",
                "2026-11-01T08:00:00Z",
                "2026-11-01T08:30:00Z",
                // Monday, EST (UTC-5): six slots.
                "2026-11-02T06:00:00Z",
                "2026-11-02T06:30:00Z",
                "2026-11-02T07:00:00Z",
                "2026-11-02T07:30:00Z",
                "2026-11-02T08:00:00Z",
                "2026-11-02T08:30:00Z",
            ]
        );
        assert_eq!(
            local(&slots[6..14], &tz),
            [
                "2026-11-01 01:00 -04:00",
                "2026-11-01 01:30 -04:00",
                "2026-11-01 01:00 -05:00",
                "2026-11-01 01:30 -05:00",
                "2026-11-01 02:00 -05:00",
                "2026-11-01 02:30 -05:00",
                "2026-11-01 03:00 -05:00",
                "2026-11-01 03:30 -05:00",
            ]
        );
    }

    #[test]
    fn new_york_rule_ending_in_the_overlap_ends_at_its_first_occurrence() {
        let tz = zone("America/New_York");
        let sunday = |from, to| {
            free(&tz, &[rule(Weekday::Sunday, from, to, 30)], &[], &[], "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z")
        };
        // 00:00 EDT to the first 01:30 (EDT): 90 real minutes.
        assert_eq!(
            starts(&sunday((0, 0), (1, 30)), 30),
            ["2026-11-01T04:00:00Z", "2026-11-01T04:30:00Z", "2026-11-01T05:00:00Z"]
        );
        // 01:30 (first occurrence, EDT) to 02:00 EST: 90 real minutes.
        assert_eq!(
            starts(&sunday((1, 30), (2, 0)), 30),
            ["2026-11-01T05:30:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:30:00Z"]
        );
    }

    #[test]
    fn nine_to_five_is_eight_real_hours_on_change_days() {
        for (name, days) in
            [("America/New_York", ["2026-03-08", "2026-11-01"]), ("Europe/Berlin", ["2026-03-29", "2026-10-25"])]
        {
            let tz = zone(name);
            for day in days {
                let date: jiff::civil::Date = day.parse().unwrap();
                let from = date.to_zoned(tz.clone()).unwrap().timestamp();
                let to = date.tomorrow().unwrap().to_zoned(tz.clone()).unwrap().timestamp();
                let slots = free_slots(&tz, &[rule(Weekday::Sunday, (9, 0), (17, 0), 60)], &[], &[], from, to).unwrap();
                assert_eq!(slots.len(), 8, "{name} {day}");
                assert_eq!(slots[7].end.duration_since(slots[0].start), SignedDuration::from_hours(8), "{name} {day}");
                assert_eq!(local(&slots[..1], &tz)[0][11..16], *"09:00", "{name} {day}");
            }
        }
    }

    #[test]
    fn berlin_morning_rule_on_change_days_gives_six_half_hours_at_the_right_utc_times() {
        let tz = zone("Europe/Berlin");
        let rules = [rule(Weekday::Sunday, (9, 0), (12, 0), 30)];
        let morning = |from: &str, to: &str| starts(&free(&tz, &rules, &[], &[], from, to), 30);
        let cet =
            |day: &str| ["08:00", "08:30", "09:00", "09:30", "10:00", "10:30"].map(|hm| format!("{day}T{hm}:00Z"));
        let cest =
            |day: &str| ["07:00", "07:30", "08:00", "08:30", "09:00", "09:30"].map(|hm| format!("{day}T{hm}:00Z"));

        // Sunday before spring forward: CET (UTC+1).
        assert_eq!(morning("2026-03-21T23:00:00Z", "2026-03-22T23:00:00Z"), cet("2026-03-22"));
        // Spring forward 2026-03-29, 02:00 CET → 03:00 CEST: the morning is already CEST (UTC+2).
        assert_eq!(morning("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z"), cest("2026-03-29"));
        // Fall back 2026-10-25, 03:00 CEST → 02:00 CET: the morning is CET again.
        assert_eq!(morning("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z"), cet("2026-10-25"));
        // The Sunday before fall back: CEST.
        assert_eq!(morning("2026-10-17T22:00:00Z", "2026-10-18T22:00:00Z"), cest("2026-10-18"));
    }

    #[test]
    fn gap_at_local_midnight_starts_the_window_at_the_transition() {
        // Cuba springs forward at 00:00 (CST → CDT): 2026-03-08 begins at 01:00.
        let tz = zone("America/Havana");
        let slots = free(
            &tz,
            &[rule(Weekday::Sunday, (0, 0), (2, 0), 30), rule(Weekday::Saturday, (23, 0), (23, 59), 30)],
            &[],
            &[],
            "2026-03-07T05:00:00Z",
            "2026-03-09T04:00:00Z",
        );
        // Saturday 23:00–23:59 fits one slot (a rule cannot reach midnight); Sunday 00:00–02:00
        // starts at the transition, 01:00 CDT, and lasts one real hour.
        assert_eq!(starts(&slots, 30), ["2026-03-08T04:00:00Z", "2026-03-08T05:00:00Z", "2026-03-08T05:30:00Z"]);
        assert_eq!(
            local(&slots, &tz),
            ["2026-03-07 23:00 -05:00", "2026-03-08 01:00 -04:00", "2026-03-08 01:30 -04:00"]
        );
    }

    #[test]
    fn leave_removes_overlapping_slots_and_extra_hours_add_slots() {
        let tz = zone("Europe/Istanbul");
        let rules = [rule(Weekday::Monday, (9, 0), (12, 0), 60), rule(Weekday::Tuesday, (9, 0), (12, 0), 60)];
        let exceptions = [
            // Monday 10:30–11:15 local: removes the 10:00 and 11:00 slots, keeps 09:00.
            Exception::Unavailable { from: ts("2026-01-05T07:30:00Z"), to: ts("2026-01-05T08:15:00Z") },
            // All of Tuesday off.
            Exception::Unavailable { from: ts("2026-01-05T21:00:00Z"), to: ts("2026-01-06T21:00:00Z") },
            // Saturday 10:00–11:30 local, 45-minute slots.
            Exception::ExtraHours {
                from: ts("2026-01-10T07:00:00Z"),
                to: ts("2026-01-10T08:30:00Z"),
                slot_minutes: 45,
            },
            // Same as Monday's 09:00 rule slot: deduplicated.
            Exception::ExtraHours {
                from: ts("2026-01-05T06:00:00Z"),
                to: ts("2026-01-05T07:00:00Z"),
                slot_minutes: 60,
            },
            // Extra hours during leave: removed too.
            Exception::ExtraHours {
                from: ts("2026-01-06T14:00:00Z"),
                to: ts("2026-01-06T15:00:00Z"),
                slot_minutes: 30,
            },
        ];
        let slots = free(&tz, &rules, &exceptions, &[], "2026-01-04T21:00:00Z", "2026-01-11T21:00:00Z");
        assert_eq!(
            slots,
            [
                Slot { start: ts("2026-01-05T06:00:00Z"), end: ts("2026-01-05T07:00:00Z") },
                Slot { start: ts("2026-01-10T07:00:00Z"), end: ts("2026-01-10T07:45:00Z") },
                Slot { start: ts("2026-01-10T07:45:00Z"), end: ts("2026-01-10T08:30:00Z") },
            ]
        );
        // Without the exceptions: six rule slots.
        assert_eq!(free(&tz, &rules, &[], &[], "2026-01-04T21:00:00Z", "2026-01-11T21:00:00Z").len(), 6);
    }

    #[test]
    fn busy_removes_exactly_the_overlapping_slots() {
        let tz = zone("Europe/Istanbul");
        let rules = [rule(Weekday::Monday, (9, 0), (12, 0), 30)];
        let all = ["06:00", "06:30", "07:00", "07:30", "08:00", "08:30"];
        let without = |removed: &[&str]| {
            all.iter().filter(|hm| !removed.contains(hm)).map(|hm| format!("2026-01-05T{hm}:00Z")).collect::<Vec<_>>()
        };
        let with_busy = |intervals: &[Busy]| {
            starts(&free(&tz, &rules, &[], intervals, "2026-01-04T21:00:00Z", "2026-01-05T21:00:00Z"), 30)
        };

        assert_eq!(with_busy(&[]), without(&[]));
        // Exactly one slot booked: its neighbours, touching it, stay.
        assert_eq!(with_busy(&[busy("2026-01-05T07:00:00Z", "2026-01-05T07:30:00Z")]), without(&["07:00"]));
        // A short booking inside a slot, and one straddling a boundary.
        assert_eq!(
            with_busy(&[
                busy("2026-01-05T08:10:00Z", "2026-01-05T08:20:00Z"),
                busy("2026-01-05T06:20:00Z", "2026-01-05T06:40:00Z")
            ]),
            without(&["08:00", "06:00", "06:30"])
        );
        // Touching the window from outside: nothing removed.
        assert_eq!(
            with_busy(&[
                busy("2026-01-05T05:00:00Z", "2026-01-05T06:00:00Z"),
                busy("2026-01-05T09:00:00Z", "2026-01-05T10:00:00Z")
            ]),
            without(&[])
        );
        // Overlapping bookings (merged internally), unsorted, one nested in another.
        assert_eq!(
            with_busy(&[
                busy("2026-01-05T07:40:00Z", "2026-01-05T07:50:00Z"),
                busy("2026-01-05T06:59:00Z", "2026-01-05T07:31:00Z"),
                busy("2026-01-05T07:10:00Z", "2026-01-05T07:20:00Z"),
            ]),
            without(&["06:30", "07:00", "07:30"])
        );
        // One booking ending a nanosecond into a slot removes it.
        assert_eq!(
            with_busy(&[busy("2026-01-05T07:00:00Z", "2026-01-05T07:30:00.000000001Z")]),
            without(&["07:00", "07:30"])
        );
    }

    #[test]
    fn busy_filtering_matches_a_naive_overlap_check() {
        let tz = TimeZone::UTC;
        let rules: Vec<_> = [Weekday::Monday, Weekday::Tuesday, Weekday::Wednesday]
            .into_iter()
            .map(|weekday| rule(weekday, (0, 0), (23, 55), 5))
            .collect();
        let (from, to) = (ts("2026-01-05T00:00:00Z"), ts("2026-01-08T00:00:00Z"));
        let unblocked = free_slots(&tz, &rules, &[], &[], from, to).unwrap();
        assert_eq!(unblocked.len(), 3 * 287);
        // Deterministic pseudo-random intervals (xorshift), some overlapping, some adjacent.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for round in 0..50 {
            let busy: Vec<Busy> = (0..next(40))
                .map(|_| {
                    let start = from.as_second() + i64::try_from(next(3 * 86_400)).unwrap();
                    let length = 1 + i64::try_from(next(if round % 2 == 0 { 600 } else { 7_200 })).unwrap();
                    Busy {
                        from: Timestamp::from_second(start).unwrap(),
                        to: Timestamp::from_second(start + length).unwrap(),
                    }
                })
                .collect();
            let expected: Vec<Slot> = unblocked
                .iter()
                .filter(|slot| !busy.iter().any(|interval| interval.from < slot.end && slot.start < interval.to))
                .copied()
                .collect();
            assert_eq!(free_slots(&tz, &rules, &[], &busy, from, to).unwrap(), expected, "round {round}: {busy:?}");
        }
    }

    #[test]
    fn range_keeps_only_whole_slots_inside_it() {
        let tz = zone("Europe/Istanbul");
        let rules = [rule(Weekday::Monday, (9, 0), (12, 0), 30)];
        // 10:15 to 11:30 local: 10:30 and 11:00 fit; 10:00 starts before, 11:30 ends after.
        let slots = free(&tz, &rules, &[], &[], "2026-01-05T07:15:00Z", "2026-01-05T08:30:00Z");
        assert_eq!(starts(&slots, 30), ["2026-01-05T07:30:00Z", "2026-01-05T08:00:00Z"]);
        // Boundaries exactly on slot edges keep the slots on both sides of them.
        let slots = free(&tz, &rules, &[], &[], "2026-01-05T06:00:00Z", "2026-01-05T07:00:00Z");
        assert_eq!(starts(&slots, 30), ["2026-01-05T06:00:00Z", "2026-01-05T06:30:00Z"]);
        // A range shorter than a slot.
        assert!(free(&tz, &rules, &[], &[], "2026-01-05T06:00:00Z", "2026-01-05T06:29:59Z").is_empty());
        // A range starting mid-window on a day whose weekday the range start and end straddle.
        let slots = free(&tz, &rules, &[], &[], "2026-01-05T08:00:00Z", "2026-01-12T06:30:00Z");
        assert_eq!(starts(&slots, 30), ["2026-01-05T08:00:00Z", "2026-01-05T08:30:00Z", "2026-01-12T06:00:00Z"]);
    }

    #[test]
    fn extra_hours_stay_aligned_to_their_own_start_when_clipped() {
        let tz = TimeZone::UTC;
        let extra = [Exception::ExtraHours {
            from: ts("2026-01-05T10:00:00Z"),
            to: ts("2026-01-05T14:00:00Z"),
            slot_minutes: 60,
        }];
        let slots = free(&tz, &[], &extra, &[], "2026-01-05T11:30:00Z", "2026-01-05T23:00:00Z");
        assert_eq!(starts(&slots, 60), ["2026-01-05T12:00:00Z", "2026-01-05T13:00:00Z"]);
        let slots = free(&tz, &[], &extra, &[], "2026-01-05T11:00:00Z", "2026-01-05T13:30:00Z");
        assert_eq!(starts(&slots, 60), ["2026-01-05T11:00:00Z", "2026-01-05T12:00:00Z"]);
    }

    #[test]
    fn long_extra_hours_cost_only_the_slots_in_range() {
        let extra = [Exception::ExtraHours {
            from: ts("1900-01-01T00:00:07Z"),
            to: ts("2200-01-01T00:00:00Z"),
            slot_minutes: 5,
        }];
        let slots = free(&TimeZone::UTC, &[], &extra, &[], "2026-01-05T00:00:00Z", "2026-01-06T00:00:00Z");
        assert_eq!(slots.len(), 287);
        assert_eq!(slots[0].start, ts("2026-01-05T00:00:07Z"));
        assert_eq!(slots[286].end, ts("2026-01-05T23:55:07Z"));
    }

    #[test]
    fn slot_length_must_be_5_to_240_minutes() {
        let tz = TimeZone::UTC;
        let (from, to) = (ts("2026-01-05T00:00:00Z"), ts("2026-01-06T00:00:00Z"));
        for minutes in [0, 4, 241, u32::MAX] {
            let result = free_slots(&tz, &[rule(Weekday::Monday, (9, 0), (17, 0), minutes)], &[], &[], from, to);
            assert!(matches!(result, Err(AvailabilityError::SlotLength { minutes: m }) if m == minutes), "{minutes}");
            let extra = [Exception::ExtraHours { from, to, slot_minutes: minutes }];
            assert!(matches!(free_slots(&tz, &[], &extra, &[], from, to), Err(AvailabilityError::SlotLength { .. })));
        }
        let five = free_slots(&tz, &[rule(Weekday::Monday, (9, 0), (10, 0), 5)], &[], &[], from, to).unwrap();
        assert_eq!(five.len(), 12);
        let long = free_slots(&tz, &[rule(Weekday::Monday, (9, 0), (17, 0), 240)], &[], &[], from, to).unwrap();
        assert_eq!(starts(&long, 240), ["2026-01-05T09:00:00Z", "2026-01-05T13:00:00Z"]);
    }

    #[test]
    fn rules_and_intervals_must_not_be_empty() {
        let tz = TimeZone::UTC;
        let (from, to) = (ts("2026-01-05T00:00:00Z"), ts("2026-01-06T00:00:00Z"));
        let good = rule(Weekday::Monday, (9, 0), (10, 0), 30);
        for bad in [rule(Weekday::Tuesday, (9, 0), (9, 0), 30), rule(Weekday::Tuesday, (10, 0), (9, 0), 30)] {
            // Invalid even on a weekday the range does not touch.
            let result = free_slots(&tz, &[good, bad], &[], &[], from, to);
            assert!(matches!(result, Err(AvailabilityError::EmptyRule { index: 1, .. })), "{result:?}");
        }
        let t = ts("2026-01-05T10:00:00Z");
        for bad in
            [Exception::Unavailable { from: t, to: t }, Exception::ExtraHours { from: to, to: from, slot_minutes: 30 }]
        {
            let result = free_slots(&tz, &[], &[bad], &[], from, to);
            assert!(matches!(result, Err(AvailabilityError::EmptyException { index: 0, .. })), "{result:?}");
        }
        let result = free_slots(&tz, &[], &[], &[busy("2026-01-05T10:00:00Z", "2026-01-05T09:00:00Z")], from, to);
        assert!(matches!(result, Err(AvailabilityError::EmptyBusy { index: 0, .. })), "{result:?}");
    }

    #[test]
    fn range_must_be_non_empty_and_at_most_62_days() {
        let tz = zone("Europe/Istanbul");
        let rules = [rule(Weekday::Monday, (9, 0), (10, 0), 30)];
        let from = ts("2026-01-01T00:00:00Z");
        assert!(matches!(free_slots(&tz, &rules, &[], &[], from, from), Err(AvailabilityError::EmptyRange { .. })));
        let before = ts("2025-12-31T00:00:00Z");
        assert!(matches!(free_slots(&tz, &rules, &[], &[], from, before), Err(AvailabilityError::EmptyRange { .. })));

        let limit = from.checked_add(SignedDuration::from_hours(62 * 24)).unwrap();
        let slots = free_slots(&tz, &rules, &[], &[], from, limit).unwrap();
        // Up to 2026-03-04: the nine Mondays from 2026-01-05 to 2026-03-02, two slots each.
        assert_eq!(slots.len(), 18);
        assert_eq!(slots[17].start, ts("2026-03-02T06:30:00Z"));
        let over = limit.checked_add(SignedDuration::from_secs(1)).unwrap();
        let result = free_slots(&tz, &rules, &[], &[], from, over);
        assert!(matches!(result, Err(AvailabilityError::RangeTooLong { .. })), "{result:?}");
        assert!(result.unwrap_err().to_string().contains("62 days"));
    }

    #[test]
    fn json_shapes() {
        let rule: WeeklyRule =
            serde_json::from_str(r#"{"weekday":"Tuesday","from":"09:00","to":"17:30:00","slotMinutes":30}"#).unwrap();
        assert_eq!(rule, self::rule(Weekday::Tuesday, (9, 0), (17, 30), 30));
        assert_eq!(
            serde_json::to_value(rule).unwrap(),
            serde_json::json!({"weekday": "tuesday", "from": "09:00:00", "to": "17:30:00", "slotMinutes": 30})
        );
        assert!(
            serde_json::from_str::<WeeklyRule>(r#"{"weekday":"tue","from":"09:00","to":"17:00","slotMinutes":30}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<WeeklyRule>(
                r#"{"weekday":"monday","from":"09:00","to":"17:00","slotMinutes":30,"x":1}"#
            )
            .is_err()
        );

        let exceptions: Vec<Exception> = serde_json::from_str(
            r#"[{"kind":"unavailable","from":"2026-03-09T00:00:00Z","to":"2026-03-14T00:00:00+03:00"},
                {"kind":"extraHours","from":"2026-03-07T07:00:00Z","to":"2026-03-07T10:00:00Z","slotMinutes":20}]"#,
        )
        .unwrap();
        assert_eq!(
            exceptions,
            [
                Exception::Unavailable { from: ts("2026-03-09T00:00:00Z"), to: ts("2026-03-13T21:00:00Z") },
                Exception::ExtraHours {
                    from: ts("2026-03-07T07:00:00Z"),
                    to: ts("2026-03-07T10:00:00Z"),
                    slot_minutes: 20
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(exceptions[1]).unwrap(),
            serde_json::json!({"kind": "extraHours", "from": "2026-03-07T07:00:00Z", "to": "2026-03-07T10:00:00Z", "slotMinutes": 20})
        );
        assert_eq!(
            serde_json::to_value(Slot { start: ts("2026-03-08T06:00:00Z"), end: ts("2026-03-08T06:30:00Z") }).unwrap(),
            serde_json::json!({"start": "2026-03-08T06:00:00Z", "end": "2026-03-08T06:30:00Z"})
        );
        let busy: Busy =
            serde_json::from_str(r#"{"from":"2026-03-08T06:00:00Z","to":"2026-03-08T06:30:00Z"}"#).unwrap();
        assert_eq!(busy, self::busy("2026-03-08T06:00:00Z", "2026-03-08T06:30:00Z"));
    }

    #[test]
    fn openapi_schemas_use_the_json_names() {
        use utoipa::PartialSchema;
        let rule = serde_json::to_string(&WeeklyRule::schema()).unwrap();
        for name in ["\"weekday\"", "\"from\"", "\"to\"", "\"slotMinutes\""] {
            assert!(rule.contains(name), "{name} in {rule}");
        }
        let exception = serde_json::to_string(&Exception::schema()).unwrap();
        for name in ["\"kind\"", "\"unavailable\"", "\"extraHours\"", "\"slotMinutes\"", "\"date-time\""] {
            assert!(exception.contains(name), "{name} in {exception}");
        }
        assert!(!exception.contains("slot_minutes"), "{exception}");
    }
}
