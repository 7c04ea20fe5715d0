//! Canonical printing: every `Display` here produces text that parses back to an equal value
//! (`parse_filter(&expr.to_string()) == Ok(expr)`), adding parentheses only where precedence
//! needs them and no spaces after commas, so the text can go straight into a URL.
//!
//! The round trip holds for ASTs the parser can produce; a hand-built AST with, say, a path
//! segment `"and"` prints text that does not parse back.

use std::fmt::{self, Display, Formatter, Write as _};

use crate::ast::{
    Date, DateTimeOffset, Duration, ExpandItem, Expr, ExprKind, Literal, OrderBy, QueryOptions,
    SelectItem, TimeOfDay, UnaryOp, precedence,
};

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ExprKind::Literal(literal) => literal.fmt(f),
            ExprKind::Path(segments) => f.write_str(&segments.join("/")),
            ExprKind::Unary { op: UnaryOp::Not, operand } => {
                f.write_str("not ")?;
                write_operand(f, operand, precedence_of(operand) < precedence::NOT)
            }
            ExprKind::Unary { op: UnaryOp::Neg, operand } => {
                f.write_str("-")?;
                // `-5` would read back as the literal -5, not as a negation of 5.
                let parens = precedence_of(operand) < precedence::NEGATION
                    || starts_with_digit_or_sign(operand);
                write_operand(f, operand, parens)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let level = op.precedence();
                // Left-associative, except comparisons, which do not chain at all.
                let lhs_parens = if op.is_comparison() {
                    precedence_of(lhs) <= level
                } else {
                    precedence_of(lhs) < level
                };
                write_operand(f, lhs, lhs_parens)?;
                write!(f, " {} ", op.keyword())?;
                write_operand(f, rhs, precedence_of(rhs) <= level)
            }
            ExprKind::In { lhs, list } => {
                write_operand(f, lhs, precedence_of(lhs) <= precedence::COMPARISON)?;
                f.write_str(" in (")?;
                write_comma_separated(f, list)?;
                f.write_str(")")
            }
            ExprKind::Call { function, args } => {
                write!(f, "{}(", function.name())?;
                write_comma_separated(f, args)?;
                f.write_str(")")
            }
            ExprKind::Lambda { collection, quantifier, predicate } => {
                write!(f, "{}/{}(", collection.join("/"), quantifier.keyword())?;
                if let Some(predicate) = predicate {
                    write!(f, "{}:{}", predicate.variable, predicate.body)?;
                }
                f.write_str(")")
            }
        }
    }
}

/// The binding strength of the expression's top operator.
fn precedence_of(expr: &Expr) -> u8 {
    match &expr.kind {
        ExprKind::Literal(_)
        | ExprKind::Path(_)
        | ExprKind::Call { .. }
        | ExprKind::Lambda { .. } => precedence::PRIMARY,
        ExprKind::Unary { op: UnaryOp::Not, .. } => precedence::NOT,
        ExprKind::Unary { op: UnaryOp::Neg, .. } => precedence::NEGATION,
        ExprKind::Binary { op, .. } => op.precedence(),
        ExprKind::In { .. } => precedence::COMPARISON,
    }
}

/// Literals whose printed form starts with a digit or a sign.
fn starts_with_digit_or_sign(expr: &Expr) -> bool {
    matches!(
        &expr.kind,
        ExprKind::Literal(
            Literal::Int(_)
                | Literal::Decimal { .. }
                | Literal::Date(_)
                | Literal::TimeOfDay(_)
                | Literal::DateTimeOffset(_)
        )
    )
}

fn write_operand(f: &mut Formatter<'_>, operand: &Expr, parens: bool) -> fmt::Result {
    if parens { write!(f, "({operand})") } else { operand.fmt(f) }
}

fn write_comma_separated<T: Display>(f: &mut Formatter<'_>, items: &[T]) -> fmt::Result {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            f.write_str(",")?;
        }
        item.fmt(f)?;
    }
    Ok(())
}

/// `'text'` with `'` doubled.
fn write_quoted(f: &mut Formatter<'_>, text: &str) -> fmt::Result {
    f.write_char('\'')?;
    f.write_str(&text.replace('\'', "''"))?;
    f.write_char('\'')
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(value) => write!(f, "{value}"),
            Literal::Int(value) => write!(f, "{value}"),
            Literal::Decimal { text, .. } => f.write_str(text),
            Literal::String(text) => write_quoted(f, text),
            Literal::DateTimeOffset(value) => value.fmt(f),
            Literal::Date(value) => value.fmt(f),
            Literal::TimeOfDay(value) => value.fmt(f),
            Literal::Duration(value) => write!(f, "duration'{value}'"),
            Literal::Geography(wkt) => {
                f.write_str("geography")?;
                write_quoted(f, wkt)
            }
            Literal::Geometry(wkt) => {
                f.write_str("geometry")?;
                write_quoted(f, wkt)
            }
        }
    }
}

/// `YYYY-MM-DD`.
impl Display for Date {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// `HH:MM:SS` plus the fraction without trailing zeros, if any.
impl Display for TimeOfDay {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.hour, self.minute, self.second)?;
        write_fraction(f, self.nanosecond)
    }
}

fn write_fraction(f: &mut Formatter<'_>, nanoseconds: u32) -> fmt::Result {
    if nanoseconds == 0 {
        return Ok(());
    }
    let digits = format!("{nanoseconds:09}");
    write!(f, ".{}", digits.trim_end_matches('0'))
}

/// `YYYY-MM-DDTHH:MM:SS[.f](Z|±HH:MM)`.
impl Display for DateTimeOffset {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}T{}", self.date, self.time)?;
        if self.offset_minutes == 0 {
            return f.write_str("Z");
        }
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let minutes = self.offset_minutes.unsigned_abs();
        write!(f, "{sign}{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

/// ISO 8601 `[-]P…`, zero components left out; an all-zero duration is `PT0S`.
impl Display for Duration {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.negative {
            f.write_str("-")?;
        }
        f.write_str("P")?;
        for (value, unit) in
            [(self.years, 'Y'), (self.months, 'M'), (self.weeks, 'W'), (self.days, 'D')]
        {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        let has_seconds = self.seconds != 0 || self.nanoseconds != 0;
        let date_empty = self.years == 0 && self.months == 0 && self.weeks == 0 && self.days == 0;
        if self.hours == 0 && self.minutes == 0 && !has_seconds {
            return if date_empty { f.write_str("T0S") } else { Ok(()) };
        }
        f.write_str("T")?;
        if self.hours != 0 {
            write!(f, "{}H", self.hours)?;
        }
        if self.minutes != 0 {
            write!(f, "{}M", self.minutes)?;
        }
        if has_seconds {
            write!(f, "{}", self.seconds)?;
            write_fraction(f, self.nanoseconds)?;
            f.write_str("S")?;
        }
        Ok(())
    }
}

/// `expr` or `expr desc`.
impl Display for OrderBy {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)?;
        if self.descending {
            f.write_str(" desc")?;
        }
        Ok(())
    }
}

/// `a/b`.
impl Display for SelectItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path.join("/"))
    }
}

/// `Datastreams($select=name;$expand=Observations($top=1))`.
impl Display for ExpandItem {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path.join("/"))?;
        if self.options.is_empty() {
            return Ok(());
        }
        f.write_str("(")?;
        for (index, (key, value)) in self.options.to_pairs().iter().enumerate() {
            if index > 0 {
                f.write_str(";")?;
            }
            write!(f, "{key}={value}")?;
        }
        f.write_str(")")
    }
}

/// `$filter=…&$top=…`, not percent-encoded: for logs and messages. Use
/// [`QueryOptions::to_pairs`] to rebuild a query.
impl Display for QueryOptions {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (index, (key, value)) in self.to_pairs().iter().enumerate() {
            if index > 0 {
                f.write_str("&")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

impl QueryOptions {
    /// The options as canonical key/value pairs (not percent-encoded), in a fixed order;
    /// [`crate::parse_query_options`] reads them back to an equal value.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        fn join<T: Display>(items: &[T]) -> String {
            items.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        }
        let mut pairs = Vec::new();
        let mut push = |key: &str, value: String| pairs.push((key.to_owned(), value));
        if let Some(filter) = &self.filter {
            push("$filter", filter.to_string());
        }
        if let Some(select) = &self.select {
            push("$select", join(select));
        }
        if !self.orderby.is_empty() {
            push("$orderby", join(&self.orderby));
        }
        if !self.expand.is_empty() {
            push("$expand", join(&self.expand));
        }
        if let Some(top) = self.top {
            push("$top", top.to_string());
        }
        if let Some(skip) = self.skip {
            push("$skip", skip.to_string());
        }
        if let Some(count) = self.count {
            push("$count", count.to_string());
        }
        if let Some(result_format) = &self.result_format {
            push("$resultFormat", result_format.clone());
        }
        pairs
    }
}
