//! The system query options: `parse_query_options` for a whole URL query, and the list
//! parsers for `$orderby`, `$select` and `$expand` (with nested options) on the shared
//! token [`Parser`].
//!
//! `$expand` is normalised while it is parsed: `A/B(opts)` becomes `A($expand=B(opts))`, and
//! items with the same navigation property are merged, so the lowering sees one tree.

use crate::ast::{ExpandItem, Literal, OrderBy, QueryOptions, SelectItem, Span};
use crate::error::{ErrorCode, QueryError, SyntaxError};
use crate::lexer::Tok;
use crate::parser::{Parser, parse_option, too_deep};
use crate::{MAX_DEPTH, parse_expand, parse_filter, parse_orderby, parse_select};

/// The system query options this crate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SystemOption {
    Filter,
    Select,
    OrderBy,
    Expand,
    Top,
    Skip,
    Count,
    ResultFormat,
}

impl SystemOption {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "$filter" => SystemOption::Filter,
            "$select" => SystemOption::Select,
            "$orderby" => SystemOption::OrderBy,
            "$expand" => SystemOption::Expand,
            "$top" => SystemOption::Top,
            "$skip" => SystemOption::Skip,
            "$count" => SystemOption::Count,
            "$resultFormat" => SystemOption::ResultFormat,
            _ => return None,
        })
    }

    /// Whether `options` already has this option set.
    fn is_set_in(self, options: &QueryOptions) -> bool {
        match self {
            SystemOption::Filter => options.filter.is_some(),
            SystemOption::Select => options.select.is_some(),
            SystemOption::OrderBy => !options.orderby.is_empty(),
            SystemOption::Expand => !options.expand.is_empty(),
            SystemOption::Top => options.top.is_some(),
            SystemOption::Skip => options.skip.is_some(),
            SystemOption::Count => options.count.is_some(),
            SystemOption::ResultFormat => options.result_format.is_some(),
        }
    }
}

/// Parses the system query options of a request.
///
/// `pairs` are the URL query's key/value pairs, already percent-decoded, in order. Keys that
/// do not start with `$` are custom parameters and ignored. Errors: an unknown `$`-option
/// ([`ErrorCode::UnsupportedOption`]), an option given twice, `$top`/`$skip` that are not
/// non-negative integers, `$count` other than `true`/`false`, and any error in a value.
pub fn parse_query_options(pairs: &[(String, String)]) -> Result<QueryOptions, QueryError> {
    let mut options = QueryOptions::default();
    for (key, value) in pairs {
        if !key.starts_with('$') {
            continue;
        }
        let Some(option) = SystemOption::from_key(key) else {
            return Err(QueryError::whole_option(
                ErrorCode::UnsupportedOption,
                key,
                format!("unsupported query option '{key}'"),
                value,
            ));
        };
        if option.is_set_in(&options) {
            return Err(QueryError::whole_option(
                ErrorCode::InvalidQuery,
                key,
                format!("duplicate query option '{key}'"),
                value,
            ));
        }
        match option {
            SystemOption::Filter => options.filter = Some(parse_filter(value)?),
            SystemOption::Select => options.select = Some(parse_select(value)?),
            SystemOption::OrderBy => options.orderby = parse_orderby(value)?,
            SystemOption::Expand => options.expand = parse_expand(value)?,
            SystemOption::Top => options.top = Some(parse_non_negative(key, value)?),
            SystemOption::Skip => options.skip = Some(parse_non_negative(key, value)?),
            SystemOption::Count => {
                options.count = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(whole_value_error(key, "'true' or 'false'", value)),
                });
            }
            SystemOption::ResultFormat => options.result_format = Some(value.clone()),
        }
    }
    Ok(options)
}

/// `$top`/`$skip`: ASCII digits only (no sign, no spaces), fitting a `u64`.
fn parse_non_negative(key: &str, value: &str) -> Result<u64, QueryError> {
    let digits_only = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u64>() {
        Ok(number) if digits_only => Ok(number),
        _ => Err(whole_value_error(key, "a non-negative integer", value)),
    }
}

fn whole_value_error(key: &str, expected: &str, value: &str) -> QueryError {
    let message = if value.is_empty() {
        format!("expected {expected}")
    } else {
        format!("expected {expected}, found '{value}'")
    };
    QueryError::whole_option(ErrorCode::InvalidQuery, key, message, value)
}

/// Parses a whole `$orderby` value.
pub(crate) fn orderby(input: &str) -> Result<Vec<OrderBy>, QueryError> {
    parse_option(input, "$orderby", |parser| {
        let items = parser.parse_orderby_list()?;
        parser.expect_end("an operator, 'asc', 'desc' or ','")?;
        Ok(items)
    })
}

/// Parses a whole `$select` value.
pub(crate) fn select(input: &str) -> Result<Vec<SelectItem>, QueryError> {
    parse_option(input, "$select", |parser| {
        let items = parser.parse_select_list()?;
        parser.expect_end("',' or '/'")?;
        Ok(items)
    })
}

/// Parses a whole `$expand` value.
pub(crate) fn expand(input: &str) -> Result<Vec<ExpandItem>, QueryError> {
    parse_option(input, "$expand", |parser| {
        let items = parser.parse_expand_list()?;
        parser.expect_end("',', '/' or '('")?;
        Ok(items)
    })
}

impl Parser<'_> {
    /// `orderby_item { "," orderby_item }`.
    fn parse_orderby_list(&mut self) -> Result<Vec<OrderBy>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            let expr = self.parse_expr()?.expr;
            let direction = match self.peek_word() {
                Some("desc") => Some(true),
                Some("asc") => Some(false),
                _ => None,
            };
            if direction.is_some() {
                self.bump();
            }
            items.push(OrderBy { expr, descending: direction.unwrap_or(false) });
            if self.eat(&Tok::Comma).is_none() {
                return Ok(items);
            }
        }
    }

    /// `path { "," path }`.
    fn parse_select_list(&mut self) -> Result<Vec<SelectItem>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            let (first, span) = self.parse_name("a property name")?;
            let mut path = vec![first];
            let mut end = span.end;
            while let Some(slash) = self.eat_path_slash(end) {
                let (segment, segment_span) =
                    self.parse_segment(slash.end, "a property name after '/'")?;
                path.push(segment);
                end = segment_span.end;
            }
            items.push(SelectItem { path, span: span.start..end });
            if self.eat(&Tok::Comma).is_none() {
                return Ok(items);
            }
        }
    }

    /// A property or navigation name: any word but a `$`-option.
    fn parse_name(&mut self, what: &str) -> Result<(String, Span), SyntaxError> {
        match self.peek_word() {
            Some(word) if !word.starts_with('$') => {
                let word = word.to_owned();
                Ok((word, self.bump().span))
            }
            _ => Err(self.expected(what)),
        }
    }

    /// A path segment that must start right at `offset`, after a `/`.
    fn parse_segment(&mut self, offset: usize, what: &str) -> Result<(String, Span), SyntaxError> {
        if !self.next_starts_at(offset) {
            return Err(self.expected(what));
        }
        self.parse_name(what)
    }

    /// A navigation property name: an identifier (never a number, whatever the position), so
    /// that every expand item prints and parses back the same.
    fn parse_navigation_name(
        &mut self,
        after_slash: Option<usize>,
    ) -> Result<(String, Span), SyntaxError> {
        let what = if after_slash.is_some() {
            "a navigation property after '/'"
        } else {
            "a navigation property"
        };
        let identifier = self
            .peek_word()
            .and_then(|word| word.chars().next())
            .is_some_and(|c| c.is_alphabetic() || c == '_');
        if !identifier {
            return Err(self.expected(what));
        }
        match after_slash {
            Some(offset) => self.parse_segment(offset, what),
            None => self.parse_name(what),
        }
    }

    /// `expand_item { "," expand_item }`, merged by navigation property.
    fn parse_expand_list(&mut self) -> Result<Vec<ExpandItem>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            let item = self.parse_expand_item()?;
            merge_expand_item(&mut items, item)?;
            if self.eat(&Tok::Comma).is_none() {
                return Ok(items);
            }
        }
    }

    /// `name { "/" name } [ "(" options ")" ]`, normalised to one segment per level:
    /// `A/B(opts)` becomes `A($expand=B(opts))`.
    fn parse_expand_item(&mut self) -> Result<ExpandItem, SyntaxError> {
        let first = self.parse_navigation_name(None)?;
        let mut end = first.1.end;
        let mut segments = vec![first];
        while let Some(slash) = self.eat_path_slash(end) {
            let segment = self.parse_navigation_name(Some(slash.end))?;
            end = segment.1.end;
            segments.push(segment);
            // Each segment is one level of the normalised tree.
            if self.depth() + segments.len() > MAX_DEPTH {
                return Err(too_deep(slash.start..end));
            }
        }
        let options = match self.eat(&Tok::LParen) {
            Some(open) => {
                let (options, close_end) = self.nested(open, Self::parse_nested_options)?;
                end = close_end;
                options
            }
            None => QueryOptions::default(),
        };
        // Build from the innermost segment outwards; every item's span ends where the
        // written item ends.
        let Some((name, span)) = segments.pop() else {
            return Err(self.expected("a navigation property"));
        };
        let mut item = ExpandItem { path: vec![name], options, span: span.start..end };
        while let Some((name, span)) = segments.pop() {
            let options = QueryOptions { expand: vec![item], ..QueryOptions::default() };
            item = ExpandItem { path: vec![name], options, span: span.start..end };
        }
        Ok(item)
    }

    /// `option { ";" option } ")"` inside `$expand` parentheses; returns the options and the
    /// end of the closing parenthesis.
    fn parse_nested_options(&mut self) -> Result<(QueryOptions, usize), SyntaxError> {
        let mut options = QueryOptions::default();
        loop {
            let key = match self.peek_word() {
                Some(word) if word.starts_with('$') => word.to_owned(),
                _ => return Err(self.expected("a query option such as '$filter'")),
            };
            let key_span = self.bump().span;
            let unsupported = || {
                SyntaxError::unsupported(
                    format!("unsupported query option '{key}' in $expand"),
                    key_span.clone(),
                )
            };
            let option = SystemOption::from_key(&key).ok_or_else(unsupported)?;
            if option.is_set_in(&options) {
                return Err(SyntaxError::invalid(
                    format!("duplicate query option '{key}'"),
                    key_span,
                ));
            }
            self.expect(&Tok::Equals, &format!("'=' after '{key}'"))?;
            let expected_word = match option {
                SystemOption::Filter => {
                    options.filter = Some(self.parse_expr()?.expr);
                    "an operator, ';' or ')'"
                }
                SystemOption::OrderBy => {
                    options.orderby = self.parse_orderby_list()?;
                    "an operator, 'asc', 'desc', ',', ';' or ')'"
                }
                SystemOption::Select => {
                    options.select = Some(self.parse_select_list()?);
                    "',', '/', ';' or ')'"
                }
                SystemOption::Expand => {
                    options.expand = self.parse_expand_list()?;
                    "',', '/', '(', ';' or ')'"
                }
                SystemOption::Top => {
                    options.top = Some(self.parse_non_negative_token()?);
                    "';' or ')'"
                }
                SystemOption::Skip => {
                    options.skip = Some(self.parse_non_negative_token()?);
                    "';' or ')'"
                }
                SystemOption::Count => {
                    options.count = Some(self.parse_bool_token()?);
                    "';' or ')'"
                }
                // The result format applies to the whole response, not to expanded entities.
                SystemOption::ResultFormat => return Err(unsupported()),
            };
            if self.eat(&Tok::Semicolon).is_some() {
                continue;
            }
            let close = self.expect_closing(&Tok::RParen, "';' or ')'", expected_word)?;
            return Ok((options, close.end));
        }
    }

    /// A `$top`/`$skip` value: plain digits. Past `i64::MAX` the lexer has made the digits a
    /// decimal, which is still a valid `u64` here.
    fn parse_non_negative_token(&mut self) -> Result<u64, SyntaxError> {
        let number = match &self.peek().tok {
            Tok::Literal(Literal::Int(number)) => u64::try_from(*number).ok(),
            Tok::Literal(Literal::Decimal { text, .. })
                if text.bytes().all(|b| b.is_ascii_digit()) =>
            {
                text.parse::<u64>().ok()
            }
            _ => None,
        };
        let number = number.ok_or_else(|| self.expected("a non-negative integer"))?;
        self.bump();
        Ok(number)
    }

    fn parse_bool_token(&mut self) -> Result<bool, SyntaxError> {
        let value = match self.peek_word() {
            Some("true") => true,
            Some("false") => false,
            _ => return Err(self.expected("'true' or 'false'")),
        };
        self.bump();
        Ok(value)
    }
}

/// Adds `item` to `items`, merging it into an earlier item for the same navigation property.
fn merge_expand_item(items: &mut Vec<ExpandItem>, item: ExpandItem) -> Result<(), SyntaxError> {
    match items.iter_mut().find(|existing| existing.path == item.path) {
        Some(existing) => {
            let name = item.path.join("/");
            merge_options(&mut existing.options, item.options, &name, &item.span)
        }
        None => {
            items.push(item);
            Ok(())
        }
    }
}

/// Merges the options of two `$expand` items for `name`; the same option set on both is a
/// conflict, nested expands merge recursively.
fn merge_options(
    into: &mut QueryOptions,
    from: QueryOptions,
    name: &str,
    span: &Span,
) -> Result<(), SyntaxError> {
    let conflict = |key: &str| {
        SyntaxError::invalid(format!("conflicting {key} for expanded '{name}'"), span.clone())
    };
    fn take<T>(into: &mut Option<T>, from: Option<T>) -> Result<(), ()> {
        match (into.is_some(), from) {
            (true, Some(_)) => Err(()),
            (false, Some(value)) => {
                *into = Some(value);
                Ok(())
            }
            (_, None) => Ok(()),
        }
    }
    take(&mut into.filter, from.filter).map_err(|()| conflict("$filter"))?;
    take(&mut into.select, from.select).map_err(|()| conflict("$select"))?;
    take(&mut into.top, from.top).map_err(|()| conflict("$top"))?;
    take(&mut into.skip, from.skip).map_err(|()| conflict("$skip"))?;
    take(&mut into.count, from.count).map_err(|()| conflict("$count"))?;
    take(&mut into.result_format, from.result_format).map_err(|()| conflict("$resultFormat"))?;
    if !from.orderby.is_empty() {
        if !into.orderby.is_empty() {
            return Err(conflict("$orderby"));
        }
        into.orderby = from.orderby;
    }
    for item in from.expand {
        merge_expand_item(&mut into.expand, item)?;
    }
    Ok(())
}
