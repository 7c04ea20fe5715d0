//! The query AST: [`Expr`] for `$filter` and `$orderby`, and the option structs
//! ([`QueryOptions`], [`OrderBy`], [`SelectItem`], [`ExpandItem`]).
//!
//! Every node carries a byte [`Span`] into the option's input string, for error messages in
//! later stages. Equality ignores spans, so that `parse(print(ast)) == ast` can be asserted.

use std::ops::Range;

use crate::function::Function;

/// A byte range into the input string of one query option (0-based, end exclusive).
pub type Span = Range<usize>;

/// An expression of the `$filter` language, with the span it was parsed from.
///
/// `PartialEq` compares [`Expr::kind`] only.
#[derive(Debug, Clone)]
pub struct Expr {
    /// What the expression is.
    pub kind: ExprKind,
    /// Where it was written; for a parenthesised expression the span includes the parentheses.
    pub span: Span,
}

impl Expr {
    /// Wraps `kind` with its span.
    pub fn new(kind: ExprKind, span: Span) -> Self {
        Expr { kind, span }
    }
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
    }
}

/// The expression forms of SensorThings 1.1 `$filter`, plus the OData 4.01 `in` operator and
/// the FROST `any`/`all` lambdas.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    /// A constant.
    Literal(Literal),
    /// A property path as written, e.g. `["Datastream", "Thing", "name"]`, `["properties", "a"]`,
    /// `["@iot.id"]` or `["id"]`, or inside a lambda `["d", "name"]` where `d` is the variable.
    /// The lowering resolves the segments against the data model.
    Path(Vec<String>),
    /// `not operand` or `-operand`.
    Unary {
        /// Which operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// `lhs op rhs` for the logical, comparison and arithmetic operators.
    Binary {
        /// Which operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `lhs in (item, ...)` (OData 4.01); the list is never empty.
    In {
        /// The value looked up.
        lhs: Box<Expr>,
        /// The candidates, in the order written.
        list: Vec<Expr>,
    },
    /// A call of a built-in function; the parser has checked the name and the argument count.
    Call {
        /// Which function.
        function: Function,
        /// The arguments, in order.
        args: Vec<Expr>,
    },
    /// `collection/any(v: predicate)`, `collection/any()` or `collection/all(v: predicate)`.
    Lambda {
        /// The path to the collection, e.g. `["Datastreams"]`.
        collection: Vec<String>,
        /// `any` or `all`.
        quantifier: Quantifier,
        /// The bound variable and predicate; `None` only for `any()` ("is not empty").
        predicate: Option<LambdaPredicate>,
    },
}

/// The body of a lambda: `variable: body`.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaPredicate {
    /// The range variable; paths in `body` that start with it refer to the collection's items.
    pub variable: String,
    /// The boolean condition.
    pub body: Box<Expr>,
}

/// The quantifier of a lambda expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantifier {
    /// True when some item matches (or, without predicate, when there is any item).
    Any,
    /// True when every item matches.
    All,
}

impl Quantifier {
    /// The keyword as written in a path: `any` or `all`.
    pub fn keyword(self) -> &'static str {
        match self {
            Quantifier::Any => "any",
            Quantifier::All => "all",
        }
    }
}

/// A prefix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// Logical `not`.
    Not,
    /// Arithmetic negation `-`.
    Neg,
}

/// An infix operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// Logical `or`.
    Or,
    /// Logical `and`.
    And,
    /// `eq`.
    Eq,
    /// `ne`.
    Ne,
    /// `gt`.
    Gt,
    /// `ge`.
    Ge,
    /// `lt`.
    Lt,
    /// `le`.
    Le,
    /// `add`.
    Add,
    /// `sub`.
    Sub,
    /// `mul`.
    Mul,
    /// `div`.
    Div,
    /// `mod`.
    Mod,
}

/// Binding strength of the operator levels, lowest first; used by the parser and the printer.
pub(crate) mod precedence {
    pub(crate) const OR: u8 = 1;
    pub(crate) const AND: u8 = 2;
    pub(crate) const NOT: u8 = 3;
    pub(crate) const COMPARISON: u8 = 4;
    pub(crate) const ADDITIVE: u8 = 5;
    pub(crate) const MULTIPLICATIVE: u8 = 6;
    pub(crate) const NEGATION: u8 = 7;
    pub(crate) const PRIMARY: u8 = 8;
}

impl BinaryOp {
    /// Every operator, for tables and tests.
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Gt,
        BinaryOp::Ge,
        BinaryOp::Lt,
        BinaryOp::Le,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Mod,
    ];

    /// The lowercase OData keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "eq",
            BinaryOp::Ne => "ne",
            BinaryOp::Gt => "gt",
            BinaryOp::Ge => "ge",
            BinaryOp::Lt => "lt",
            BinaryOp::Le => "le",
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Mod => "mod",
        }
    }

    /// The operator spelled `keyword` (case-sensitive, as in OData).
    pub fn from_keyword(keyword: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|op| op.keyword() == keyword)
    }

    /// True for `eq ne gt ge lt le`, which do not chain.
    pub fn is_comparison(self) -> bool {
        self.precedence() == precedence::COMPARISON
    }

    pub(crate) fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => precedence::OR,
            BinaryOp::And => precedence::AND,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Gt
            | BinaryOp::Ge
            | BinaryOp::Lt
            | BinaryOp::Le => precedence::COMPARISON,
            BinaryOp::Add | BinaryOp::Sub => precedence::ADDITIVE,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => precedence::MULTIPLICATIVE,
        }
    }
}

/// A constant in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer that fits an `i64`, sign included (`-5` is a literal, not a negation).
    Int(i64),
    /// A number with a fraction or exponent, or an integer too large for `i64`.
    Decimal {
        /// The value as parsed; always finite.
        value: f64,
        /// The digits as written, so no precision is lost (e.g. for `numeric` in SQL).
        text: String,
    },
    /// A string, with `''` already unescaped.
    String(String),
    /// An ISO 8601 date-time with offset, e.g. `2015-03-01T00:00:00.5+01:00`.
    DateTimeOffset(DateTimeOffset),
    /// A calendar date, e.g. `2015-03-01`.
    Date(Date),
    /// A time of day, e.g. `12:30:00`.
    TimeOfDay(TimeOfDay),
    /// `duration'P1DT2H'`.
    Duration(Duration),
    /// `geography'POINT(1 2)'`: the WKT text between the quotes, not validated here.
    Geography(String),
    /// `geometry'POINT(1 2)'`: the WKT text between the quotes, not validated here.
    Geometry(String),
}

/// A proleptic Gregorian calendar date; the parser has checked that it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Date {
    /// Year, 0 to 9999 (four digits as written).
    pub year: i32,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 28..=31 depending on the month.
    pub day: u8,
}

/// A time of day; the parser has checked the ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeOfDay {
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59 (0 when not written).
    pub second: u8,
    /// Fraction of the second in nanoseconds; digits past the ninth are dropped.
    pub nanosecond: u32,
}

/// A date-time with a fixed UTC offset (OData `Edm.DateTimeOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTimeOffset {
    /// The local date.
    pub date: Date,
    /// The local time.
    pub time: TimeOfDay,
    /// Offset from UTC in minutes, `Z` being 0; between -1439 and 1439.
    pub offset_minutes: i16,
}

/// An ISO 8601 duration `[-]P[nY][nM][nW][nD][T[nH][nM][n[.f]S]]`.
///
/// Components are kept as written (`PT36H` stays 36 hours) because years and months have no
/// fixed length; the lowering decides how to turn them into an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Duration {
    /// A leading `-`.
    pub negative: bool,
    /// `nY`.
    pub years: u64,
    /// `nM` before `T`.
    pub months: u64,
    /// `nW`.
    pub weeks: u64,
    /// `nD`.
    pub days: u64,
    /// `nH`.
    pub hours: u64,
    /// `nM` after `T`.
    pub minutes: u64,
    /// Whole seconds of `n[.f]S`.
    pub seconds: u64,
    /// Fraction of `n.fS` in nanoseconds; digits past the ninth are dropped.
    pub nanoseconds: u32,
}

/// One level of system query options: the top level of a request, or the options of one
/// `$expand` item.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueryOptions {
    /// `$filter`.
    pub filter: Option<Expr>,
    /// `$orderby` keys, most significant first; empty when absent.
    pub orderby: Vec<OrderBy>,
    /// `$select`; `None` when absent (all properties).
    pub select: Option<Vec<SelectItem>>,
    /// `$expand`, normalised: one segment per item, items with the same name merged.
    pub expand: Vec<ExpandItem>,
    /// `$top`.
    pub top: Option<u64>,
    /// `$skip`.
    pub skip: Option<u64>,
    /// `$count`.
    pub count: Option<bool>,
    /// `$resultFormat` verbatim (top level only); the server validates it.
    pub result_format: Option<String>,
}

impl QueryOptions {
    /// True when no option is set.
    pub fn is_empty(&self) -> bool {
        *self == QueryOptions::default()
    }
}

/// One `$orderby` key.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// What to sort by: usually a path, but any expression is accepted.
    pub expr: Expr,
    /// `desc`; `asc` is the default.
    pub descending: bool,
}

/// One `$select` item: a property, a navigation property or a path into `properties`.
///
/// `PartialEq` ignores the span.
#[derive(Debug, Clone)]
pub struct SelectItem {
    /// The segments as written, e.g. `["@iot.id"]` or `["properties", "a"]`.
    pub path: Vec<String>,
    /// Where it was written.
    pub span: Span,
}

impl PartialEq for SelectItem {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

/// One `$expand` item with its nested options.
///
/// `PartialEq` ignores the span.
#[derive(Debug, Clone)]
pub struct ExpandItem {
    /// The navigation property; a single segment after normalisation (`A/B` becomes `A` with
    /// a nested `$expand=B`).
    pub path: Vec<String>,
    /// Options applied to the expanded entities.
    pub options: QueryOptions,
    /// Where the item (its first occurrence, when merged) was written.
    pub span: Span,
}

impl PartialEq for ExpandItem {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.options == other.options
    }
}
