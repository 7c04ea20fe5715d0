//! The built-in functions of the `$filter` language: names and argument counts, in one table.

use std::ops::RangeInclusive;

/// Declares [`Function`] and its name and arity tables from one list, so they cannot disagree.
macro_rules! functions {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, $min:literal ..= $max:literal; )*) => {
        /// A built-in `$filter` function: the SensorThings 1.1 table (string, date, math,
        /// OData geo and OGC `st_*` functions) plus the FROST Allen-interval extensions.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Function {
            $( $(#[$doc])* $variant, )*
        }

        impl Function {
            /// Every function, in table order.
            pub const ALL: &'static [Function] = &[$(Function::$variant),*];

            /// The name as written in a filter, e.g. `geo.distance`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Function::$variant => $name,)*
                }
            }

            /// The function called `name` (case-sensitive), if it is a known one.
            pub fn from_name(name: &str) -> Option<Function> {
                match name {
                    $($name => Some(Function::$variant),)*
                    _ => None,
                }
            }

            /// How many arguments the function takes.
            pub fn arity(self) -> RangeInclusive<usize> {
                match self {
                    $(Function::$variant => $min..=$max,)*
                }
            }
        }
    };
}

functions! {
    /// `substringof(p0, p1)`: true when `p1` contains `p0` (OData 2 argument order).
    SubstringOf = "substringof", 2..=2;
    /// `contains(p0, p1)`: true when `p0` contains `p1`.
    Contains = "contains", 2..=2;
    /// `startswith(p0, p1)`.
    StartsWith = "startswith", 2..=2;
    /// `endswith(p0, p1)`.
    EndsWith = "endswith", 2..=2;
    /// `length(p0)`.
    Length = "length", 1..=1;
    /// `indexof(p0, p1)`.
    IndexOf = "indexof", 2..=2;
    /// `substring(p0, p1[, p2])`.
    Substring = "substring", 2..=3;
    /// `tolower(p0)`.
    ToLower = "tolower", 1..=1;
    /// `toupper(p0)`.
    ToUpper = "toupper", 1..=1;
    /// `trim(p0)`.
    Trim = "trim", 1..=1;
    /// `concat(p0, p1)`.
    Concat = "concat", 2..=2;
    /// `year(p0)`.
    Year = "year", 1..=1;
    /// `month(p0)`.
    Month = "month", 1..=1;
    /// `day(p0)`.
    Day = "day", 1..=1;
    /// `hour(p0)`.
    Hour = "hour", 1..=1;
    /// `minute(p0)`.
    Minute = "minute", 1..=1;
    /// `second(p0)`.
    Second = "second", 1..=1;
    /// `fractionalseconds(p0)`.
    FractionalSeconds = "fractionalseconds", 1..=1;
    /// `date(p0)`: the date part.
    Date = "date", 1..=1;
    /// `time(p0)`: the time-of-day part.
    Time = "time", 1..=1;
    /// `totaloffsetminutes(p0)`.
    TotalOffsetMinutes = "totaloffsetminutes", 1..=1;
    /// `now()`.
    Now = "now", 0..=0;
    /// `mindatetime()`.
    MinDateTime = "mindatetime", 0..=0;
    /// `maxdatetime()`.
    MaxDateTime = "maxdatetime", 0..=0;
    /// `round(p0)`.
    Round = "round", 1..=1;
    /// `floor(p0)`.
    Floor = "floor", 1..=1;
    /// `ceiling(p0)`.
    Ceiling = "ceiling", 1..=1;
    /// `geo.distance(p0, p1)`.
    GeoDistance = "geo.distance", 2..=2;
    /// `geo.length(p0)`.
    GeoLength = "geo.length", 1..=1;
    /// `geo.intersects(p0, p1)`.
    GeoIntersects = "geo.intersects", 2..=2;
    /// `st_equals(g1, g2)`.
    StEquals = "st_equals", 2..=2;
    /// `st_disjoint(g1, g2)`.
    StDisjoint = "st_disjoint", 2..=2;
    /// `st_touches(g1, g2)`.
    StTouches = "st_touches", 2..=2;
    /// `st_within(g1, g2)`.
    StWithin = "st_within", 2..=2;
    /// `st_overlaps(g1, g2)`.
    StOverlaps = "st_overlaps", 2..=2;
    /// `st_crosses(g1, g2)`.
    StCrosses = "st_crosses", 2..=2;
    /// `st_intersects(g1, g2)`.
    StIntersects = "st_intersects", 2..=2;
    /// `st_contains(g1, g2)`.
    StContains = "st_contains", 2..=2;
    /// `st_relate(g1, g2, 'DE-9IM pattern')`.
    StRelate = "st_relate", 3..=3;
    /// `before(t1, t2)` (FROST extension, Allen interval relation).
    Before = "before", 2..=2;
    /// `after(t1, t2)` (FROST extension).
    After = "after", 2..=2;
    /// `meets(t1, t2)` (FROST extension).
    Meets = "meets", 2..=2;
    /// `during(t1, t2)` (FROST extension).
    During = "during", 2..=2;
    /// `overlaps(t1, t2)` (FROST extension).
    Overlaps = "overlaps", 2..=2;
    /// `starts(t1, t2)` (FROST extension).
    Starts = "starts", 2..=2;
    /// `finishes(t1, t2)` (FROST extension).
    Finishes = "finishes", 2..=2;
}

impl Function {
    /// The arity for an error message: `1 argument`, `2 or 3 arguments`, `no arguments`.
    pub(crate) fn describe_arity(self) -> String {
        let arity = self.arity();
        let (min, max) = (*arity.start(), *arity.end());
        match (min, max) {
            (0, 0) => "no arguments".to_owned(),
            (1, 1) => "1 argument".to_owned(),
            (min, max) if min == max => format!("{min} arguments"),
            (min, max) if max == min + 1 => format!("{min} or {max} arguments"),
            (min, max) => format!("{min} to {max} arguments"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Function;

    #[test]
    fn names_round_trip() {
        for &function in Function::ALL {
            assert_eq!(Function::from_name(function.name()), Some(function));
        }
        assert_eq!(Function::ALL.len(), 46);
        assert_eq!(Function::from_name("Length"), None);
    }

    #[test]
    fn arity_descriptions() {
        assert_eq!(Function::Now.describe_arity(), "no arguments");
        assert_eq!(Function::Length.describe_arity(), "1 argument");
        assert_eq!(Function::Concat.describe_arity(), "2 arguments");
        assert_eq!(Function::Substring.describe_arity(), "2 or 3 arguments");
    }
}
