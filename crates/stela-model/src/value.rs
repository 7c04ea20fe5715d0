//! Property values: times (instants and intervals, ISO 8601), JSON, text.
//!
//! Instants are kept as microseconds since the Unix epoch in UTC: they sort and compare as
//! integers in every store, and render back as ISO 8601 with the precision they need
//! (seconds, milliseconds or microseconds). Input with a time-zone offset is normalised to UTC.

use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

/// Microseconds since 1970-01-01T00:00:00Z.
pub type Micros = i64;

/// A time value of SensorThings: an instant or a closed interval `start/end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeValue {
    Instant(Micros),
    Interval(Micros, Micros),
}

impl TimeValue {
    pub fn start(self) -> Micros {
        match self {
            TimeValue::Instant(t) | TimeValue::Interval(t, _) => t,
        }
    }

    pub fn end(self) -> Micros {
        match self {
            TimeValue::Instant(t) | TimeValue::Interval(_, t) => t,
        }
    }
}

/// The value of one property.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Text(String),
    /// JSON kept as given (objects, geometry, results, metadata).
    Json(serde_json::Value),
    Time(TimeValue),
}

/// Why a time could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("'{0}' is not an ISO 8601 date-time with a time zone")]
    Instant(String),
    #[error("'{0}' is not an ISO 8601 interval 'start/end'")]
    Interval(String),
    #[error("interval '{0}' ends before it starts")]
    Reversed(String),
    #[error("date-time '{0}' is out of the supported range")]
    OutOfRange(String),
}

/// Parses an ISO 8601 / RFC 3339 instant with a time zone (`2015-03-01T00:00:00.123+01:00`).
pub fn parse_instant(text: &str) -> Result<Micros, TimeError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .map_err(|_| TimeError::Instant(text.to_owned()))?;
    let micros = parsed.unix_timestamp_nanos() / 1_000;
    Micros::try_from(micros).map_err(|_| TimeError::OutOfRange(text.to_owned()))
}

/// Parses an ISO 8601 interval `start/end` of two instants.
pub fn parse_interval(text: &str) -> Result<(Micros, Micros), TimeError> {
    let (start, end) = text.split_once('/').ok_or_else(|| TimeError::Interval(text.to_owned()))?;
    let start = parse_instant(start).map_err(|_| TimeError::Interval(text.to_owned()))?;
    let end = parse_instant(end).map_err(|_| TimeError::Interval(text.to_owned()))?;
    if end < start {
        return Err(TimeError::Reversed(text.to_owned()));
    }
    Ok((start, end))
}

/// Parses an instant or, when it contains `/`, an interval.
pub fn parse_time_value(text: &str) -> Result<TimeValue, TimeError> {
    if text.contains('/') {
        parse_interval(text).map(|(s, e)| TimeValue::Interval(s, e))
    } else {
        parse_instant(text).map(TimeValue::Instant)
    }
}

/// Renders an instant as ISO 8601 in UTC with the precision it needs.
pub fn format_instant(micros: Micros) -> String {
    let mut out = String::with_capacity(27);
    write_instant(micros, &mut out);
    out
}

/// Appends [`format_instant`]'s text to `out` (digit by digit: every time of every entity
/// rendered or logged goes through here).
pub fn write_instant(micros: Micros, out: &mut String) {
    /// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z.
    const FOUR_DIGIT_YEARS: std::ops::Range<Micros> =
        -62_167_219_200_000_000..253_402_300_800_000_000;
    if FOUR_DIGIT_YEARS.contains(&micros) {
        write_four_digit_year_instant(micros, out);
    } else {
        write_instant_by_calendar(micros, out);
    }
}

/// [`write_instant`] for years 0 to 9999 (every time but the rare extreme ones): the civil date
/// computed from the day number (H. Hinnant's `civil_from_days`), the text built on the stack.
fn write_four_digit_year_instant(micros: Micros, out: &mut String) {
    let (seconds, fraction) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let of_era = z.rem_euclid(146_097);
    let year_of_era = (of_era - of_era / 1_460 + of_era / 36_524 - of_era / 146_096) / 365;
    let of_year = of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * of_year + 2) / 153;
    let day = of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, value: i64, width: usize| {
        let mut rest = value;
        for position in (at..at + width).rev() {
            text[position] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, of_day / 3_600, 2);
    put(14, of_day / 60 % 60, 2);
    put(17, of_day % 60, 2);
    let length = if fraction == 0 {
        19
    } else if fraction % 1_000 == 0 {
        put(20, fraction / 1_000, 3);
        23
    } else {
        put(20, fraction, 6);
        26
    };
    text[length] = b'Z';
    // Digits and separators only: always UTF-8.
    if let Ok(text) = std::str::from_utf8(&text[..=length]) {
        out.push_str(text);
    }
}

/// [`write_instant`] through the `time` crate's calendar, for any year it knows.
fn write_instant_by_calendar(micros: Micros, out: &mut String) {
    let Ok(dt) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000) else {
        out.push_str("invalid");
        return;
    };
    let (year, month, day) = (dt.year(), u8::from(dt.month()), dt.day());
    let (hour, minute, second) = (dt.hour(), dt.minute(), dt.second());
    if (0..=9999).contains(&year) {
        push_digits(out, year.unsigned_abs(), 4);
    } else {
        out.push(if year < 0 { '-' } else { '+' });
        let digits = year.unsigned_abs().checked_ilog10().map_or(1, |d| d + 1).max(4);
        push_digits(out, year.unsigned_abs(), digits as usize);
    }
    for (separator, value) in [('-', month), ('-', day), ('T', hour), (':', minute), (':', second)]
    {
        out.push(separator);
        push_digits(out, u32::from(value), 2);
    }
    let fraction = micros.rem_euclid(1_000_000) as u32;
    if fraction != 0 {
        out.push('.');
        if fraction.is_multiple_of(1_000) {
            push_digits(out, fraction / 1_000, 3);
        } else {
            push_digits(out, fraction, 6);
        }
    }
    out.push('Z');
}

/// Appends `value` in decimal, zero-padded to `width` digits.
fn push_digits(out: &mut String, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut rest = value;
    let mut used = 0;
    while rest > 0 || used == 0 {
        digits[9 - used] = b'0' + (rest % 10) as u8;
        rest /= 10;
        used += 1;
    }
    for _ in used..width {
        out.push('0');
    }
    for digit in &digits[10 - used..] {
        out.push(char::from(*digit));
    }
}

/// Renders a time value: an instant, or an interval `start/end`.
pub fn format_time_value(value: TimeValue) -> String {
    match value {
        TimeValue::Instant(t) => format_instant(t),
        TimeValue::Interval(s, e) => format!("{}/{}", format_instant(s), format_instant(e)),
    }
}

/// The canonical JSON of a property value, as SensorThings renders it.
pub fn value_to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Text(text) => serde_json::Value::String(text.clone()),
        Value::Json(json) => json.clone(),
        Value::Time(time) => serde_json::Value::String(format_time_value(*time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of `format_instant` as `time` and `format!` spell it.
    fn reference_format(micros: Micros) -> String {
        let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).unwrap();
        let (year, month, day) = (dt.year(), u8::from(dt.month()), dt.day());
        let year =
            if (0..=9999).contains(&year) { format!("{year:04}") } else { format!("{year:+05}") };
        let base = format!(
            "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        match micros.rem_euclid(1_000_000) {
            0 => format!("{base}Z"),
            f if f % 1_000 == 0 => format!("{base}.{:03}Z", f / 1_000),
            f => format!("{base}.{f:06}Z"),
        }
    }

    #[test]
    fn instants_are_written_digit_by_digit_as_format_would() {
        // Years -9999 to 9999, the range of the `time` crate.
        let mut micros: i64 = -377_705_116_800_000_000;
        let mut step: i64 = 1;
        while micros < 253_402_300_800_000_000 {
            assert_eq!(format_instant(micros), reference_format(micros), "{micros}");
            micros = micros.saturating_add(step);
            step = (step.saturating_mul(3) + 7) % 900_000_000_000_000;
        }
        for exact in [
            0,
            1,
            999,
            1_000,
            999_999,
            1_000_000,
            -1,
            -1_000_000,
            253_402_300_799_999_999,
            -62_167_219_200_000_000,
            -62_167_219_200_000_001,
            951_782_400_000_000,   // 2000-02-29
            4_107_456_000_000_000, // 2100-02-28
        ] {
            assert_eq!(format_instant(exact), reference_format(exact), "{exact}");
        }
        // Beyond the calendar's years.
        assert_eq!(format_instant(253_402_300_800_000_000), "invalid");
    }

    #[test]
    fn instants_round_trip_with_their_precision() {
        for text in [
            "2015-03-01T00:00:00Z",
            "2015-03-01T00:00:00.123Z",
            "2015-03-01T00:00:00.123456Z",
            "1969-12-31T23:59:59.5Z",
        ] {
            let micros = parse_instant(text).unwrap();
            let again = parse_instant(&format_instant(micros)).unwrap();
            assert_eq!(micros, again, "{text}");
        }
        assert_eq!(
            format_instant(parse_instant("1969-12-31T23:59:59.5Z").unwrap()),
            "1969-12-31T23:59:59.500Z"
        );
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let micros = parse_instant("2015-03-01T01:00:00+01:00").unwrap();
        assert_eq!(format_instant(micros), "2015-03-01T00:00:00Z");
    }

    #[test]
    fn intervals() {
        let (s, e) = parse_interval("2015-03-01T00:00:00Z/2015-03-02T00:00:00Z").unwrap();
        assert_eq!(e - s, 86_400_000_000);
        assert!(matches!(
            parse_interval("2015-03-02T00:00:00Z/2015-03-01T00:00:00Z"),
            Err(TimeError::Reversed(_))
        ));
        assert!(parse_interval("2015-03-02T00:00:00Z").is_err());
        assert!(parse_time_value("yesterday").is_err());
        assert!(parse_instant("2015-03-01").is_err());
    }
}
