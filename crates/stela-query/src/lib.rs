//! The SensorThings API 1.1 / OData system query options: `$filter`, `$orderby`, `$select`,
//! `$expand` (with nested options), `$top`, `$skip`, `$count` and `$resultFormat`, parsed
//! into a spanned AST ([`QueryOptions`], [`Expr`]) that the SQL lowering consumes.
//!
//! The lexer and parser are written by hand. No OData crate on crates.io is complete enough:
//! `odata-params` and `odatav4-parser` lack lambdas, the `geo.*`/`st_*` functions, `duration`
//! and `geography` literals and nested `$expand` options, and a parser generator would not
//! give us the spans, error messages and recursion limits we want.
//!
//! This crate does no I/O and reads no clock: `now()` stays a [`Function`] for the lowering.
//!
//! # Entry points
//!
//! - [`parse_query_options`] for a request's percent-decoded key/value pairs;
//! - [`parse_filter`], [`parse_orderby`], [`parse_select`], [`parse_expand`] for one value;
//! - `Display` on every AST type prints canonical text that parses back to an equal value
//!   (equality ignores spans); [`Expr::to_tree`] dumps a tree with spans.
//!
//! Errors are [`QueryError`]s naming the option, the problem and its byte offset; their
//! [`ErrorCode`] tells the server which status to answer.
//!
//! # Grammar (EBNF)
//!
//! Keywords are case-sensitive lowercase, as in OData. Whitespace may appear between tokens;
//! OData's required spaces around keyword operators fall out of the lexer (`aeqb` is one
//! name). Operators from lowest to highest precedence: `or`, `and`, `not`, comparisons and
//! `in` (non-associative: `a eq b eq c` is an error), `add sub`, `mul div mod`, unary `-`.
//!
//! ```text
//! (* $filter *)
//! filter         = expr ;
//! expr           = and_expr , { "or" , and_expr } ;
//! and_expr       = not_expr , { "and" , not_expr } ;
//! not_expr       = "not" , not_expr | comparison ;
//! comparison     = additive , [ compare_op , additive
//!                             | "in" , "(" , expr , { "," , expr } , ")" ] ;
//! compare_op     = "eq" | "ne" | "gt" | "ge" | "lt" | "le" ;
//! additive       = multiplicative , { ( "add" | "sub" ) , multiplicative } ;
//! multiplicative = unary , { ( "mul" | "div" | "mod" ) , unary } ;
//! unary          = "-" , unary | primary ;
//! primary        = literal | "(" , expr , ")" | call | lambda | path ;
//! call           = function_name , "(" , [ expr , { "," , expr } ] , ")" ;
//! lambda         = path , "/" , ( "any" | "all" ) , "(" , [ variable , ":" , expr ] , ")" ;
//! path           = name , { "/" , segment } ;     (* first name not a keyword *)
//! function_name  = name ;                         (* one of the Function table *)
//!
//! literal        = "null" | "true" | "false" | number | string
//!                | date_time | date | time_of_day
//!                | "duration" , string | "geography" , string | "geometry" , string ;
//! string         = "'" , { any_char - "'" | "''" } , "'" ;
//! number         = [ "-" | "+" ] , digits , [ "." , digits ]
//!                , [ ( "e" | "E" ) , [ "-" | "+" ] , digits ] ;
//! date           = 4 * digit , "-" , 2 * digit , "-" , 2 * digit ;
//! time_of_day    = 2 * digit , ":" , 2 * digit
//!                , [ ":" , 2 * digit , [ "." , digit , { digit } ] ] ;
//! date_time      = date , "T" , time_of_day
//!                , ( "Z" | ( "+" | "-" ) , 2 * digit , ":" , 2 * digit ) ;
//! name           = ( letter | "_" | "@" | "$" ) , { letter | digit | "_" | "." } ;
//! segment        = ( letter | digit | "_" ) , { letter | digit | "_" | "." } ;
//! variable       = ( letter | "_" ) , { letter | digit | "_" } ;
//! digits         = digit , { digit } ;
//!
//! (* $orderby, $select, $expand *)
//! orderby        = orderby_item , { "," , orderby_item } ;
//! orderby_item   = expr , [ "asc" | "desc" ] ;
//! select         = select_item , { "," , select_item } ;
//! select_item    = name , { "/" , segment } ;     (* "@iot.id", "id", navigation names *)
//! expand         = expand_item , { "," , expand_item } ;
//! expand_item    = name , { "/" , name }
//!                , [ "(" , expand_option , { ";" , expand_option } , ")" ] ;
//! expand_option  = "$filter" , "=" , filter   | "$select" , "=" , select
//!                | "$orderby" , "=" , orderby | "$expand" , "=" , expand
//!                | "$top" , "=" , digits      | "$skip" , "=" , digits
//!                | "$count" , "=" , ( "true" | "false" ) ;
//! ```
//!
//! A number without fraction or exponent is an [`Literal::Int`] when it fits an `i64` and a
//! [`Literal::Decimal`] otherwise. A leading `-` directly before a digit belongs to the number
//! (`-5` is a literal); before anything else it is negation.
//!
//! # Limits
//!
//! Parentheses, unary operators, call arguments, lambdas and `$expand` levels nest at most
//! [`MAX_DEPTH`] deep, and operator chains build trees at most [`MAX_EXPR_HEIGHT`] high, so
//! neither the parser nor a recursive walk over its output can overflow the stack.

mod ast;
mod display;
mod error;
mod function;
mod lexer;
mod literal;
mod options;
mod parser;
mod tree;

pub use ast::{
    BinaryOp, Date, DateTimeOffset, Duration, ExpandItem, Expr, ExprKind, LambdaPredicate, Literal,
    OrderBy, Quantifier, QueryOptions, SelectItem, Span, TimeOfDay, UnaryOp,
};
pub use error::{ErrorCode, QueryError};
pub use function::Function;
pub use options::parse_query_options;

use parser::parse_option;

/// How deep parentheses, unary operators, function calls, lambdas and `$expand` levels may
/// nest before the parser gives up with [`ErrorCode::NestingTooDeep`].
pub const MAX_DEPTH: usize = 64;

/// The tallest expression tree the parser builds. Long chains such as `id eq 1 or id eq 2 or …`
/// are parsed without recursion but produce a tree as tall as the chain is long, which every
/// later recursive walk must descend; past this height the parser answers
/// [`ErrorCode::NestingTooDeep`] (an `in (…)` list has no such limit).
pub const MAX_EXPR_HEIGHT: usize = 1000;

/// Parses a `$filter` value.
///
/// ```
/// let expr = stela_query::parse_filter("name eq 'a' and result gt 5").unwrap();
/// assert_eq!(expr.to_string(), "name eq 'a' and result gt 5");
/// ```
pub fn parse_filter(input: &str) -> Result<Expr, QueryError> {
    parse_option(input, "$filter", |parser| {
        let expr = parser.parse_expr()?.expr;
        parser.expect_end("an operator")?;
        Ok(expr)
    })
}

/// Parses an `$orderby` value: comma-separated expressions, each optionally `asc` or `desc`.
pub fn parse_orderby(input: &str) -> Result<Vec<OrderBy>, QueryError> {
    options::orderby(input)
}

/// Parses a `$select` value: comma-separated property paths.
pub fn parse_select(input: &str) -> Result<Vec<SelectItem>, QueryError> {
    options::select(input)
}

/// Parses an `$expand` value, normalising slash paths into nested items and merging items
/// for the same navigation property.
///
/// ```
/// let items = stela_query::parse_expand("Datastreams/Sensor,Datastreams/Thing").unwrap();
/// assert_eq!(items.len(), 1);
/// assert_eq!(items[0].to_string(), "Datastreams($expand=Sensor,Thing)");
/// ```
pub fn parse_expand(input: &str) -> Result<Vec<ExpandItem>, QueryError> {
    options::expand(input)
}
