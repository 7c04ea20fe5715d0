//! Scanning of the literal forms that are not strings: numbers, dates, times of day,
//! date-times and durations.
//!
//! The lexer hands over a whole "numeric run" (see [`is_run_char`]); this module decides what
//! it is and checks it, so that `2015-13-01` is an invalid date rather than three tokens.
//! Everything here works on ASCII bytes through `get`, so no input can panic it.

use crate::ast::{Date, DateTimeOffset, Duration, Literal, TimeOfDay};

/// Characters that continue a numeric run: digits, letters (exponent, `T`, `Z`, typos), and
/// the separators of dates and times. Runs start with a digit or a sign followed by a digit.
pub(crate) fn is_run_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '+' | '-')
}

/// Classifies and checks a numeric run; the error is the message without position.
pub(crate) fn scan_numeric_run(text: &str) -> Result<Literal, String> {
    let bytes = text.as_bytes();
    let unsigned = match bytes.first() {
        Some(b'+' | b'-') => text.get(1..).unwrap_or(""),
        _ => text,
    };
    let has_sign = unsigned.len() != text.len();
    if is_digits(unsigned) {
        return Ok(match text.parse::<i64>() {
            Ok(value) => Literal::Int(value),
            // Longer than an i64: OData reads it as a decimal.
            Err(_) => decimal(text)?,
        });
    }
    if is_decimal(unsigned) {
        return decimal(text);
    }
    let looks_like_date = unsigned.len() >= 5
        && unsigned.as_bytes().get(4) == Some(&b'-')
        && unsigned.get(..4).is_some_and(is_digits);
    if looks_like_date && !has_sign {
        if unsigned.contains(['T', 't']) {
            return parse_date_time_offset(text)
                .map(Literal::DateTimeOffset)
                .map_err(|reason| format!("invalid date-time '{text}' ({reason})"));
        }
        return parse_date(text)
            .map(Literal::Date)
            .map_err(|reason| format!("invalid date '{text}' ({reason})"));
    }
    if unsigned.as_bytes().get(2) == Some(&b':') && !has_sign {
        return parse_time_of_day(text)
            .map(Literal::TimeOfDay)
            .map_err(|reason| format!("invalid time of day '{text}' ({reason})"));
    }
    Err(format!("invalid number '{text}'"))
}

fn decimal(text: &str) -> Result<Literal, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(Literal::Decimal { value, text: text.to_owned() }),
        _ => Err(format!("number '{text}' is out of range")),
    }
}

fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// `digits [ "." digits ] [ ("e"|"E") [sign] digits ]` with a fraction or an exponent.
fn is_decimal(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (text.get(..at).unwrap_or(""), Some(text.get(at + 1..).unwrap_or(""))),
        None => (text, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => is_digits(int) && is_digits(frac),
        None => is_digits(mantissa),
    };
    let exponent_ok = match exponent {
        Some(exp) => is_digits(exp.strip_prefix(['+', '-']).unwrap_or(exp)),
        None => mantissa.contains('.'),
    };
    mantissa_ok && exponent_ok
}

/// Reads exactly `n` digits at `at` as a number.
fn fixed_digits(text: &str, at: usize, n: usize) -> Option<u32> {
    let part = text.get(at..at + n)?;
    if is_digits(part) { part.parse().ok() } else { None }
}

/// `YYYY-MM-DD`, checking that the day exists.
pub(crate) fn parse_date(text: &str) -> Result<Date, &'static str> {
    let shape_ok = text.len() == 10
        && text.as_bytes().get(4) == Some(&b'-')
        && text.as_bytes().get(7) == Some(&b'-');
    let (Some(year), Some(month), Some(day), true) =
        (fixed_digits(text, 0, 4), fixed_digits(text, 5, 2), fixed_digits(text, 8, 2), shape_ok)
    else {
        return Err("expected YYYY-MM-DD");
    };
    date_from_parts(year, month, day)
}

fn date_from_parts(year: u32, month: u32, day: u32) -> Result<Date, &'static str> {
    if !(1..=12).contains(&month) {
        return Err("month out of range");
    }
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days_in_month = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if !(1..=days_in_month).contains(&day) {
        return Err("day out of range");
    }
    // All three fit: year has four digits, month and day were range-checked above.
    Ok(Date { year: year as i32, month: month as u8, day: day as u8 })
}

/// `HH:MM[:SS[.fraction]]`, the fraction 1 to 12 digits as in OData.
pub(crate) fn parse_time_of_day(text: &str) -> Result<TimeOfDay, &'static str> {
    const SHAPE: &str = "expected HH:MM[:SS[.fraction]]";
    let bytes = text.as_bytes();
    let hour = fixed_digits(text, 0, 2).ok_or(SHAPE)?;
    if bytes.get(2) != Some(&b':') {
        return Err(SHAPE);
    }
    let minute = fixed_digits(text, 3, 2).ok_or(SHAPE)?;
    let mut second = 0;
    let mut nanosecond = 0;
    match bytes.get(5) {
        None => {}
        Some(b':') => {
            second = fixed_digits(text, 6, 2).ok_or(SHAPE)?;
            match bytes.get(8) {
                None => {}
                Some(b'.') => {
                    let fraction = text.get(9..).unwrap_or("");
                    if !is_digits(fraction) || fraction.len() > 12 {
                        return Err("fraction must have 1 to 12 digits");
                    }
                    nanosecond = nanoseconds(fraction);
                }
                Some(_) => return Err(SHAPE),
            }
        }
        Some(_) => return Err(SHAPE),
    }
    if hour > 23 {
        return Err("hour out of range");
    }
    if minute > 59 {
        return Err("minute out of range");
    }
    if second > 59 {
        return Err("second out of range");
    }
    // Ranges checked above.
    Ok(TimeOfDay { hour: hour as u8, minute: minute as u8, second: second as u8, nanosecond })
}

/// The first nine digits of a fraction as nanoseconds (the rest is below our resolution).
fn nanoseconds(fraction: &str) -> u32 {
    let mut value = 0;
    for position in 0..9 {
        let digit = fraction
            .as_bytes()
            .get(position)
            .filter(|b| b.is_ascii_digit())
            .map_or(0, |b| u32::from(b - b'0'));
        value = value * 10 + digit;
    }
    value
}

/// `date "T" time ("Z" | sign HH ":" MM)`.
pub(crate) fn parse_date_time_offset(text: &str) -> Result<DateTimeOffset, &'static str> {
    let Some(t_at) = text.find(['T', 't']) else {
        return Err("expected 'T' between date and time");
    };
    let date = parse_date(text.get(..t_at).unwrap_or(""))?;
    let rest = text.get(t_at + 1..).unwrap_or("");
    let (time_text, offset_minutes) = if let Some(time_text) = rest.strip_suffix(['Z', 'z']) {
        (time_text, 0)
    } else if let Some(sign_at) = rest.rfind(['+', '-']) {
        let offset = rest.get(sign_at..).unwrap_or("");
        (rest.get(..sign_at).unwrap_or(""), parse_offset(offset)?)
    } else {
        return Err("missing time zone offset such as 'Z' or '+01:00'");
    };
    let time = parse_time_of_day(time_text)?;
    Ok(DateTimeOffset { date, time, offset_minutes })
}

/// `+HH:MM` or `-HH:MM` as minutes.
fn parse_offset(text: &str) -> Result<i16, &'static str> {
    const SHAPE: &str = "expected offset 'Z' or '+HH:MM'";
    let negative = text.starts_with('-');
    let (Some(hours), Some(minutes)) = (fixed_digits(text, 1, 2), fixed_digits(text, 4, 2)) else {
        return Err(SHAPE);
    };
    if text.len() != 6 || text.as_bytes().get(3) != Some(&b':') {
        return Err(SHAPE);
    }
    if hours > 23 || minutes > 59 {
        return Err("offset out of range");
    }
    // At most 23 * 60 + 59 = 1439.
    let total = (hours * 60 + minutes) as i16;
    Ok(if negative { -total } else { total })
}

/// `[-]P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`; the error is a reason for the message.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    const SHAPE: &str = "expected ISO 8601 [-]PnYnMnWnDTnHnMnS";
    let mut duration = Duration::default();
    let (negative, body) = match text.strip_prefix('-') {
        Some(body) => (true, body),
        None => (false, text),
    };
    duration.negative = negative;
    let body = body.strip_prefix('P').ok_or(SHAPE)?;
    let (date_part, time_part) = match body.split_once('T') {
        Some((date_part, time_part)) => {
            if time_part.is_empty() {
                return Err("'T' must be followed by hours, minutes or seconds");
            }
            (date_part, Some(time_part))
        }
        None => (body, None),
    };
    if date_part.is_empty() && time_part.is_none() {
        return Err("a duration needs at least one component");
    }
    // Units must appear in this order, each at most once.
    let date_units = [b'Y', b'M', b'W', b'D'];
    let mut next_unit = 0;
    for (number, unit) in duration_components(date_part)? {
        let index = date_units.iter().position(|&u| u == unit).ok_or(SHAPE)?;
        if index < next_unit || number.contains('.') {
            return Err(SHAPE);
        }
        next_unit = index + 1;
        let value = number.parse::<u64>().map_err(|_| "component out of range")?;
        match unit {
            b'Y' => duration.years = value,
            b'M' => duration.months = value,
            b'W' => duration.weeks = value,
            _ => duration.days = value,
        }
    }
    let time_units = [b'H', b'M', b'S'];
    next_unit = 0;
    for (number, unit) in duration_components(time_part.unwrap_or(""))? {
        let index = time_units.iter().position(|&u| u == unit).ok_or(SHAPE)?;
        if index < next_unit || (number.contains('.') && unit != b'S') {
            return Err(SHAPE);
        }
        next_unit = index + 1;
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let value = whole.parse::<u64>().map_err(|_| "component out of range")?;
        match unit {
            b'H' => duration.hours = value,
            b'M' => duration.minutes = value,
            _ => {
                duration.seconds = value;
                duration.nanoseconds = nanoseconds(fraction);
            }
        }
    }
    Ok(duration)
}

/// Splits `1Y2M3.5S` into `[("1", b'Y'), ("2", b'M'), ("3.5", b'S')]`.
fn duration_components(text: &str) -> Result<Vec<(&str, u8)>, &'static str> {
    const SHAPE: &str = "expected ISO 8601 [-]PnYnMnWnDTnHnMnS";
    let mut components = Vec::new();
    let mut start = 0;
    for (at, byte) in text.bytes().enumerate() {
        if byte.is_ascii_digit() || byte == b'.' {
            continue;
        }
        let number = text.get(start..at).ok_or(SHAPE)?;
        let valid_number = match number.split_once('.') {
            Some((whole, fraction)) => is_digits(whole) && is_digits(fraction),
            None => is_digits(number),
        };
        if !valid_number {
            return Err(SHAPE);
        }
        components.push((number, byte));
        start = at + 1;
    }
    if start != text.len() {
        return Err(SHAPE);
    }
    Ok(components)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &str) {
        let actual = match scan_numeric_run(text) {
            Ok(literal) => format!("{literal:?}"),
            Err(message) => message,
        };
        assert_eq!(actual, expect, "for {text:?}");
    }

    #[test]
    fn numbers() {
        check("42", "Int(42)");
        check("-42", "Int(-42)");
        check("+7", "Int(7)");
        check("-9223372036854775808", "Int(-9223372036854775808)");
        check(
            "9223372036854775808",
            r#"Decimal { value: 9.223372036854776e18, text: "9223372036854775808" }"#,
        );
        check("1.50", r#"Decimal { value: 1.5, text: "1.50" }"#);
        check("1e5", r#"Decimal { value: 100000.0, text: "1e5" }"#);
        check("-2.5E-3", r#"Decimal { value: -0.0025, text: "-2.5E-3" }"#);
        check("1e999", "number '1e999' is out of range");
        check("1.", "invalid number '1.'");
        check("12abc", "invalid number '12abc'");
        check("1-2", "invalid number '1-2'");
    }

    #[test]
    fn dates_and_times() {
        check("2016-02-29", "Date(Date { year: 2016, month: 2, day: 29 })");
        check("2015-02-29", "invalid date '2015-02-29' (day out of range)");
        check("1900-02-29", "invalid date '1900-02-29' (day out of range)");
        check("2000-02-29", "Date(Date { year: 2000, month: 2, day: 29 })");
        check("2015-3-01", "invalid date '2015-3-01' (expected YYYY-MM-DD)");
        check("12:30", "TimeOfDay(TimeOfDay { hour: 12, minute: 30, second: 0, nanosecond: 0 })");
        check("24:00:00", "invalid time of day '24:00:00' (hour out of range)");
        check(
            "23:59:59.1234567891",
            "TimeOfDay(TimeOfDay { hour: 23, minute: 59, second: 59, nanosecond: 123456789 })",
        );
        check("12:30:00.", "invalid time of day '12:30:00.' (fraction must have 1 to 12 digits)");
        check(
            "2015-03-01T00:00:00",
            "invalid date-time '2015-03-01T00:00:00' (missing time zone offset such as 'Z' or '+01:00')",
        );
        check(
            "2015-03-01T00:00:00+1:00",
            "invalid date-time '2015-03-01T00:00:00+1:00' (expected offset 'Z' or '+HH:MM')",
        );
        check(
            "2015-03-01T00:00:00-24:00",
            "invalid date-time '2015-03-01T00:00:00-24:00' (offset out of range)",
        );
        check("-2015-03-01", "invalid number '-2015-03-01'");
    }

    #[test]
    fn durations() {
        let d = parse_duration("-P1Y2M3W4DT5H6M7.25S").unwrap();
        assert_eq!(
            d,
            Duration {
                negative: true,
                years: 1,
                months: 2,
                weeks: 3,
                days: 4,
                hours: 5,
                minutes: 6,
                seconds: 7,
                nanoseconds: 250_000_000
            }
        );
        assert_eq!(parse_duration("PT36H").unwrap().hours, 36);
        for bad in [
            "P",
            "PT",
            "P1H",
            "P1DT",
            "PT1D",
            "P1M1Y",
            "P1.5D",
            "PT1.5H",
            "1D",
            "P1D2",
            "PT.5S",
            "P99999999999999999999D",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }
}
