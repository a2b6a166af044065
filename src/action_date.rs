//! Reading Localtonet's `ActionDate` and the zone that dates without an offset are read in.
//!
//! Localtonet's backend is .NET: its documented sample has six fractional digits and no offset,
//! `DateTime.ToString("o")` writes seven digits and sometimes `Z` or `+03:00`. All of these
//! are accepted, with 0 to 9 fractional digits.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::event::Nanos;

/// The zone in which an ActionDate without an offset is read (`--webhook.timezone`).
#[derive(Clone, Debug, PartialEq)]
pub enum Zone {
    /// A constant offset from UTC, such as `+03:00`; UTC itself is offset zero.
    Fixed(FixedOffset),
    /// An IANA zone such as `Europe/Istanbul`, whose offset follows its daylight-saving rules.
    Named(Tz),
}

impl Zone {
    /// Coordinated Universal Time, the default.
    pub fn utc() -> Zone {
        Zone::Fixed(Utc.fix())
    }

    /// Converts a wall-clock time in this zone to UTC.
    ///
    /// A time that occurs twice (clocks turned back) is read as the earlier one; a time that
    /// does not exist (clocks turned forward) is read with the offset in force just before the
    /// change, which is what a clock that missed the change would have written.
    fn to_utc(&self, local: &NaiveDateTime) -> DateTime<Utc> {
        match self {
            Zone::Fixed(offset) => local_to_utc(offset, local),
            Zone::Named(tz) => local_to_utc(tz, local),
        }
    }
}

fn local_to_utc<Z: TimeZone>(zone: &Z, local: &NaiveDateTime) -> DateTime<Utc> {
    match zone.from_local_datetime(local) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            // Clocks were turned forward over this time (by at most an hour or two); the offset
            // three hours earlier is the one in force before the change.
            let earlier = *local - chrono::Duration::hours(3);
            let before = zone.from_local_datetime(&earlier).earliest().map_or_else(
                || zone.offset_from_utc_datetime(local).fix(),
                |t| t.offset().fix(),
            );
            (*local - before).and_utc()
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Fixed(offset) if offset.local_minus_utc() == 0 => f.write_str("UTC"),
            Zone::Fixed(offset) => write!(f, "{offset}"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

impl FromStr for Zone {
    type Err = String;

    /// Accepts `UTC`, `Z`, a fixed offset (`+03:00`, `-0500`, `+03`) or an IANA zone name
    /// (`Europe/Istanbul`).
    fn from_str(s: &str) -> Result<Zone, String> {
        if s.eq_ignore_ascii_case("utc") || s.eq_ignore_ascii_case("z") {
            return Ok(Zone::utc());
        }
        if s.starts_with('+') || s.starts_with('-') {
            return parse_offset(s).map(Zone::Fixed).ok_or_else(|| {
                format!("invalid offset {s:?}: expected +HH:MM, +HHMM or +HH (at most ±23:59)")
            });
        }
        s.parse::<Tz>().map(Zone::Named).map_err(|_| {
            format!("unknown time zone {s:?}: expected UTC, an offset like +03:00 or an IANA name")
        })
    }
}

/// Reads `+HH:MM`, `+HHMM` or `+HH` (or with `-`).
fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let digits: String = match rest.len() {
        2 | 4 => rest.to_string(),
        5 if rest.as_bytes()[2] == b':' => format!("{}{}", &rest[..2], &rest[3..]),
        _ => return None,
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// Why an ActionDate could not be read. The text is shown to the sender.
pub const EXPECTED_FORMAT: &str = "is not an ISO 8601 date-time: expected e.g. \
     2024-04-29T12:35:17.154580, with 0 to 9 fractional digits and optionally Z or +03:00";

/// Parses an ActionDate. Without an offset the value is read in `zone`.
///
/// Returns `None` when the text is not a date-time of the accepted form.
pub fn parse(text: &str, zone: &Zone) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if !text.is_ascii() {
        return None;
    }
    let (local, offset) = split_offset(text)?;
    let local = parse_local(local)?;

    Some(match offset {
        Some(offset) => (local - offset).and_utc(),
        None => zone.to_utc(&local),
    })
}

/// Splits `2024-04-29T12:35:17.15+03:00` into the local part and its offset, if any.
fn split_offset(text: &str) -> Option<(&str, Option<FixedOffset>)> {
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return Some((local, Some(Utc.fix())));
    }
    // The date part has '-' in it, so an offset sign can only come after the 'T'.
    let time_start = text.find(['T', 't', ' '])?;
    match text[time_start..].rfind(['+', '-']) {
        Some(pos) => {
            let split = time_start + pos;
            Some((&text[..split], Some(parse_offset(&text[split..])?)))
        }
        None => Some((text, None)),
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fffffffff]` (a space or lower-case `t` also separate date and
/// time).
fn parse_local(text: &str) -> Option<NaiveDateTime> {
    const SHAPE: &[u8; 19] = b"dddd-dd-ddTdd:dd:dd";
    let bytes = text.as_bytes();
    let shaped = bytes.len() >= 19
        && SHAPE.iter().zip(bytes).all(|(want, got)| match want {
            b'd' => got.is_ascii_digit(),
            b'T' => matches!(got, b'T' | b't' | b' '),
            other => got == other,
        });
    if !shaped {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0'))
    };
    let nanos = match &bytes[19..] {
        [] => 0,
        [b'.', digits @ ..] if (1..=9).contains(&digits.len()) => {
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let value = number(20..bytes.len());
            value * 10u32.pow(9 - digits.len() as u32)
        }
        _ => return None,
    };
    // Leap seconds (":60") are refused: .NET never writes them.
    let date = NaiveDate::from_ymd_opt(number(0..4) as i32, number(5..7), number(8..10))?;
    let time = NaiveTime::from_hms_nano_opt(number(11..13), number(14..16), number(17..19), nanos)?;
    Some(date.and_time(time))
}

/// A UTC time as [`Nanos`]; `None` outside the years 1678 to 2261.
pub fn to_nanos(t: &DateTime<Utc>) -> Option<Nanos> {
    t.timestamp_nanos_opt()
}

/// Formats a duration in seconds the way people read them: `3h0m12s`, `45s`, `1.5s`.
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.abs();
    if total < 0.05 {
        return "less than 0.1s".into();
    }
    if total < 60.0 {
        let rounded = (total * 10.0).round() / 10.0;
        return format!("{rounded}s");
    }
    let whole = total.round() as u64;
    let (h, m, s) = (whole / 3600, whole % 3600 / 60, whole % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc_seconds(text: &str, zone: &str) -> Option<f64> {
        let zone: Zone = zone.parse().expect("zone");
        parse(text, &zone).map(|t| crate::exposition::seconds(to_nanos(&t).expect("in range")))
    }

    #[test]
    fn documented_sample_without_offset_is_read_as_utc_by_default() {
        let t = utc_seconds("2024-04-29T12:35:17.154580", "UTC").expect("parses");
        assert_eq!(t, 1714394117.15458);
    }

    #[test]
    fn seven_and_nine_fractional_digits_keep_sub_second_precision() {
        let seven = parse("2024-04-29T12:35:17.1545803Z", &Zone::utc()).expect("7 digits");
        assert_eq!(seven.timestamp_subsec_nanos(), 154_580_300);
        let nine = parse("2024-04-29T12:35:17.123456789Z", &Zone::utc()).expect("9 digits");
        assert_eq!(nine.timestamp_subsec_nanos(), 123_456_789);
    }

    #[test]
    fn no_fraction_and_z_is_accepted() {
        assert_eq!(
            utc_seconds("2024-04-29T12:35:17Z", "UTC"),
            Some(1714394117.0)
        );
    }

    #[test]
    fn explicit_offset_wins_over_configured_zone() {
        let t = utc_seconds("2024-04-29T12:35:17.154580+03:00", "America/New_York");
        assert_eq!(t, Some(1714383317.15458));
        assert_eq!(
            utc_seconds("2024-04-29T12:35:17-0130", "UTC"),
            Some(1714399517.0)
        );
        assert_eq!(
            utc_seconds("2024-04-29T12:35:17+03", "UTC"),
            Some(1714383317.0)
        );
    }

    #[test]
    fn date_without_offset_is_read_in_configured_zone() {
        assert_eq!(
            utc_seconds("2024-04-29T15:35:17", "+03:00"),
            Some(1714394117.0)
        );
        // Istanbul is UTC+3 all year.
        assert_eq!(
            utc_seconds("2024-04-29T15:35:17", "Europe/Istanbul"),
            Some(1714394117.0)
        );
        // New York in April is on daylight time, UTC-4.
        assert_eq!(
            utc_seconds("2024-04-29T08:35:17", "America/New_York"),
            Some(1714394117.0)
        );
    }

    #[test]
    fn wall_clock_times_around_dst_changes_are_read_deterministically() {
        // 2024-11-03 01:30 happens twice in New York; the first (EDT, UTC-4) is taken.
        let twice = utc_seconds("2024-11-03T01:30:00", "America/New_York");
        assert_eq!(twice, utc_seconds("2024-11-03T05:30:00Z", "UTC"));
        // 2024-03-10 02:30 never happens in New York; it is read with EST (UTC-5).
        let never = utc_seconds("2024-03-10T02:30:00", "America/New_York");
        assert_eq!(never, utc_seconds("2024-03-10T07:30:00Z", "UTC"));
        // East of UTC too: 2024-03-31 02:30 never happens in Berlin; read with CET (UTC+1),
        // so it falls after 01:59 local.
        let never = utc_seconds("2024-03-31T02:30:00", "Europe/Berlin");
        assert_eq!(never, utc_seconds("2024-03-31T01:30:00Z", "UTC"));
        assert!(utc_seconds("2024-03-31T01:59:00", "Europe/Berlin") < never);
    }

    #[test]
    fn space_separator_and_lower_case_are_accepted() {
        assert_eq!(
            utc_seconds("2024-04-29 12:35:17z", "UTC"),
            Some(1714394117.0)
        );
        assert_eq!(
            utc_seconds("2024-04-29t12:35:17", "UTC"),
            Some(1714394117.0)
        );
    }

    #[test]
    fn malformed_dates_are_refused() {
        for bad in [
            "",
            "2024-04-29",
            "2024-04-29T12:35",
            "2024-04-29T12:35:17.",
            "2024-04-29T12:35:17.1234567890",
            "2024-04-29T12:35:17.12a",
            "2024-13-29T12:35:17",
            "2024-02-30T12:35:17",
            "2024-04-29T25:35:17",
            "2024-04-29T12:35:17+24:00",
            "2024-04-29T12:35:17+3",
            "2024-04-29T12:35:17 UTC",
            "1714394117",
            "29/04/2024 12:35:17",
            "2024-04-29T12:35:17Z+03:00",
            "2024-04-29T12:35:60Z",
            "2024-04-29T 1:35:17Z",
            "2024-04-29T12:35: 7Z",
            " 2024-4-29T12:35:17Z",
            "+2024-04-29T12:35:17",
            "２０２４-04-29T12:35:17",
        ] {
            assert_eq!(parse(bad, &Zone::utc()), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn zone_flag_accepts_utc_offsets_and_iana_names_only() {
        for good in [
            "UTC",
            "utc",
            "Z",
            "+03:00",
            "-0500",
            "+05",
            "Europe/Istanbul",
        ] {
            assert!(good.parse::<Zone>().is_ok(), "{good}");
        }
        for bad in ["", "+3", "+24:00", "Mars/Olympus", "GMT+3:0"] {
            assert!(bad.parse::<Zone>().is_err(), "{bad}");
        }
        assert_eq!(
            "+03:00".parse::<Zone>().map(|z| z.to_string()),
            Ok("+03:00".into())
        );
        assert_eq!(
            "utc".parse::<Zone>().map(|z| z.to_string()),
            Ok("UTC".into())
        );
    }

    #[test]
    fn human_duration_reads_like_a_person_would_write_it() {
        assert_eq!(human_duration(10812.0), "3h0m12s");
        assert_eq!(human_duration(-125.0), "2m5s");
        assert_eq!(human_duration(1.54), "1.5s");
        assert_eq!(human_duration(1e-9), "less than 0.1s");
    }
}
