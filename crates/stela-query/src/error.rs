//! The one public error of the crate, [`QueryError`], and the transport-agnostic
//! [`ErrorCode`] the server maps to an HTTP status.
//!
//! Inside the crate the lexer and parser return [`SyntaxError`], which knows the span but not
//! which query option it came from; the public entry points attach the option name and input.

use crate::ast::Span;

/// What kind of failure a [`QueryError`] is, for the server's one status table.
///
/// All three are caused by the client; the crate has no internal errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The option value is malformed: a syntax error, an unknown function, a wrong number of
    /// arguments, an invalid literal, a duplicate or conflicting option (HTTP 400).
    InvalidQuery,
    /// A `$`-option this crate does not implement, such as `$search` or `$apply`
    /// (SensorThings asks for 501 Not Implemented).
    UnsupportedOption,
    /// The input nests deeper than [`crate::MAX_DEPTH`], or an operator chain makes the
    /// expression taller than [`crate::MAX_EXPR_HEIGHT`]; refused to protect the stack (HTTP 400).
    NestingTooDeep,
}

/// A query option that could not be parsed.
///
/// Displays as `invalid $filter: expected ')' at 23: name eq 'a' and (x gt 1`: the option, the
/// message, the byte offset (0-based) where the problem starts, and the option's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {option}: {message} at {start}: {input}", start = .span.start)]
pub struct QueryError {
    /// The query option the error is in, e.g. `$filter`. Errors inside the nested options of
    /// `$expand` name the top-level `$expand`, whose input the span points into.
    pub option: String,
    /// What is wrong, lowercase, without a trailing period, e.g. `unknown function 'foo'`.
    pub message: String,
    /// Byte range of the offending text in `input`; empty at the end of the input when more
    /// input was expected.
    pub span: Span,
    /// The option value as received (already percent-decoded), so the message can quote it.
    pub input: String,
    /// Kept private so the code always matches how the error was made.
    code: ErrorCode,
}

impl QueryError {
    /// The transport-agnostic kind of this error; the server turns it into a status code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// An error about a whole option (unknown, duplicate, bad `$top`) rather than a position
    /// inside a parsed expression.
    pub(crate) fn whole_option(
        code: ErrorCode,
        option: &str,
        message: String,
        input: &str,
    ) -> Self {
        QueryError {
            option: option.to_owned(),
            message,
            span: 0..input.len(),
            input: input.to_owned(),
            code,
        }
    }
}

/// A lexer or parser error before it is tied to a query option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) span: Span,
}

impl SyntaxError {
    /// A malformed input at `span`.
    pub(crate) fn invalid(message: impl Into<String>, span: Span) -> Self {
        SyntaxError { code: ErrorCode::InvalidQuery, message: message.into(), span }
    }

    /// A `$`-option inside `$expand(...)` that is not implemented.
    pub(crate) fn unsupported(message: impl Into<String>, span: Span) -> Self {
        SyntaxError { code: ErrorCode::UnsupportedOption, message: message.into(), span }
    }

    /// The recursion limit was hit at `span`.
    pub(crate) fn too_deep(message: impl Into<String>, span: Span) -> Self {
        SyntaxError { code: ErrorCode::NestingTooDeep, message: message.into(), span }
    }

    /// Attaches the option name and its input.
    pub(crate) fn into_query_error(self, option: &str, input: &str) -> QueryError {
        QueryError {
            option: option.to_owned(),
            message: self.message,
            span: self.span,
            input: input.to_owned(),
            code: self.code,
        }
    }
}
