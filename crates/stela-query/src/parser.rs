//! The recursive-descent parser for `$filter` expressions, and the token cursor that the
//! option parsers in [`crate::options`] share.
//!
//! Precedence climbing, one function per level, lowest first:
//!
//! ```text
//! parse_expr -> or -> and -> not -> comparison -> additive -> multiplicative -> unary -> primary
//!                                     (eq ne gt ge lt le in: at most one, no chains)
//! ```
//!
//! Two limits keep every later recursive walk (printing, dropping, lowering) off the end of
//! the stack: [`MAX_DEPTH`] bounds the parser's own recursion (parentheses, unary chains, call
//! arguments, lambdas, `$expand` levels), and [`MAX_EXPR_HEIGHT`] bounds the height of the
//! tree that long operator chains such as `a or b or c ...` build without recursing.

use crate::ast::{BinaryOp, Expr, ExprKind, LambdaPredicate, Literal, Quantifier, Span, UnaryOp};
use crate::error::{QueryError, SyntaxError};
use crate::function::Function;
use crate::lexer::{Tok, Token, tokenize};
use crate::{MAX_DEPTH, MAX_EXPR_HEIGHT};

/// Words with a fixed meaning in expressions; they cannot start a path.
const RESERVED: &[&str] = &[
    "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "mod", "in",
];

/// Every keyword of the language, for the "keywords are lowercase" hint.
const KEYWORDS: &[&str] = &[
    "and", "or", "not", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "mod",
    "in", "asc", "desc", "true", "false", "null", "any", "all",
];

const COMPARISONS: &[BinaryOp] =
    &[BinaryOp::Eq, BinaryOp::Ne, BinaryOp::Gt, BinaryOp::Ge, BinaryOp::Lt, BinaryOp::Le];

/// An expression with the height of its tree (a leaf is 1), so that chains can be capped
/// without walking the tree again.
pub(crate) struct Parsed {
    pub(crate) expr: Expr,
    height: usize,
}

impl Parsed {
    fn leaf(kind: ExprKind, span: Span) -> Self {
        Parsed { expr: Expr::new(kind, span), height: 1 }
    }

    /// A node over children of the given heights; fails past [`MAX_EXPR_HEIGHT`].
    fn node(kind: ExprKind, span: Span, child_height: usize) -> Result<Self, SyntaxError> {
        let height = child_height + 1;
        if height > MAX_EXPR_HEIGHT {
            return Err(SyntaxError::too_deep(
                format!("expression too deep (more than {MAX_EXPR_HEIGHT} levels of operators)"),
                span,
            ));
        }
        Ok(Parsed { expr: Expr::new(kind, span), height })
    }
}

/// Lexes `input` and runs `parse` over it, attaching `option` and `input` to any error.
pub(crate) fn parse_option<T>(
    input: &str,
    option: &str,
    parse: impl FnOnce(&mut Parser<'_>) -> Result<T, SyntaxError>,
) -> Result<T, QueryError> {
    Parser::new(input)
        .and_then(|mut parser| parse(&mut parser))
        .map_err(|error| error.into_query_error(option, input))
}

/// A cursor over the tokens of one option value.
#[derive(Debug)]
pub(crate) struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Current nesting, see [`Parser::nested`].
    depth: usize,
    /// Returned by `peek` past the end, so the cursor never indexes out of bounds.
    eof: Token,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(input: &'a str) -> Result<Self, SyntaxError> {
        let tokens = tokenize(input)?;
        let end = input.len();
        Ok(Parser { input, tokens, pos: 0, depth: 0, eof: Token { tok: Tok::Eof, span: end..end } })
    }

    // ---- cursor -------------------------------------------------------------------------

    pub(crate) fn peek(&self) -> &Token {
        self.tokens.get(self.pos).unwrap_or(&self.eof)
    }

    fn peek_second(&self) -> &Token {
        self.tokens.get(self.pos + 1).unwrap_or(&self.eof)
    }

    pub(crate) fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    pub(crate) fn at(&self, tok: &Tok) -> bool {
        &self.peek().tok == tok
    }

    pub(crate) fn eat(&mut self, tok: &Tok) -> Option<Span> {
        if self.at(tok) { Some(self.bump().span) } else { None }
    }

    pub(crate) fn peek_word(&self) -> Option<&str> {
        match &self.peek().tok {
            Tok::Ident(word) => Some(word),
            _ => None,
        }
    }

    pub(crate) fn at_word(&self, word: &str) -> bool {
        self.peek_word() == Some(word)
    }

    /// Eats a `/` written directly after `end`: paths have no spaces.
    pub(crate) fn eat_path_slash(&mut self, end: usize) -> Option<Span> {
        if self.at(&Tok::Slash) && self.peek().span.start == end {
            Some(self.bump().span)
        } else {
            None
        }
    }

    /// Whether the next token starts exactly at `offset`, with no space before it.
    pub(crate) fn next_starts_at(&self, offset: usize) -> bool {
        self.peek().span.start == offset
    }

    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// Runs `parse` one nesting level deeper, refusing past [`MAX_DEPTH`]; `span` is where the
    /// new level opens, for the error.
    pub(crate) fn nested<T>(
        &mut self,
        span: Span,
        parse: impl FnOnce(&mut Self) -> Result<T, SyntaxError>,
    ) -> Result<T, SyntaxError> {
        if self.depth >= MAX_DEPTH {
            return Err(too_deep(span));
        }
        self.depth += 1;
        let result = parse(self);
        self.depth -= 1;
        result
    }

    // ---- errors -------------------------------------------------------------------------

    fn text(&self, span: &Span) -> &str {
        self.input.get(span.clone()).unwrap_or("")
    }

    /// `'x'`, `string 'a'` or `end of input`.
    fn describe(&self, token: &Token) -> String {
        match &token.tok {
            Tok::Eof => "end of input".to_owned(),
            Tok::Literal(Literal::String(_)) => format!("string {}", self.text(&token.span)),
            _ => format!("'{}'", self.text(&token.span)),
        }
    }

    /// `unexpected token 'gt'` for the next token.
    pub(crate) fn unexpected(&self) -> SyntaxError {
        let token = self.peek();
        let message = match &token.tok {
            Tok::Eof => "unexpected end of input".to_owned(),
            Tok::Literal(Literal::String(_)) => format!("unexpected {}", self.describe(token)),
            _ => format!("unexpected token {}", self.describe(token)),
        };
        SyntaxError::invalid(message, token.span.clone())
    }

    /// `expected ')'` at the end of input, `expected ')', found 'x'` elsewhere.
    pub(crate) fn expected(&self, what: &str) -> SyntaxError {
        let token = self.peek();
        let message = match token.tok {
            Tok::Eof => format!("expected {what}"),
            _ => format!("expected {what}, found {}", self.describe(token)),
        };
        SyntaxError::invalid(message, token.span.clone())
    }

    pub(crate) fn expect(&mut self, tok: &Tok, what: &str) -> Result<Span, SyntaxError> {
        self.eat(tok).ok_or_else(|| self.expected(what))
    }

    /// A word right after a complete operand is most likely a misspelt or uppercase operator,
    /// or an unquoted string: say so instead of a bare "unexpected token".
    fn word_after_operand(&self, expected: &str) -> Option<SyntaxError> {
        let token = self.peek();
        let Tok::Ident(word) = &token.tok else { return None };
        Some(SyntaxError::invalid(
            format!("unexpected word '{word}', expected {expected}{}", lowercase_hint(word)),
            token.span.clone(),
        ))
    }

    /// Requires the end of input after a complete option value.
    pub(crate) fn expect_end(&self, expected_word: &str) -> Result<(), SyntaxError> {
        if self.at(&Tok::Eof) {
            return Ok(());
        }
        Err(self.word_after_operand(expected_word).unwrap_or_else(|| self.unexpected()))
    }

    /// Requires the closing token `tok` (described as `what`) after a complete operand.
    pub(crate) fn expect_closing(
        &mut self,
        tok: &Tok,
        what: &str,
        expected_word: &str,
    ) -> Result<Span, SyntaxError> {
        if let Some(span) = self.eat(tok) {
            return Ok(span);
        }
        Err(self.word_after_operand(expected_word).unwrap_or_else(|| self.expected(what)))
    }

    // ---- expressions --------------------------------------------------------------------

    /// `expr = or_expr`.
    pub(crate) fn parse_expr(&mut self) -> Result<Parsed, SyntaxError> {
        self.binary_level(&[BinaryOp::Or], Self::parse_and)
    }

    fn parse_and(&mut self) -> Result<Parsed, SyntaxError> {
        self.binary_level(&[BinaryOp::And], Self::parse_not)
    }

    /// A left-associative level: `operand { op operand }`.
    fn binary_level(
        &mut self,
        ops: &[BinaryOp],
        operand: fn(&mut Self) -> Result<Parsed, SyntaxError>,
    ) -> Result<Parsed, SyntaxError> {
        let mut lhs = operand(self)?;
        while let Some(op) = self.peek_operator(ops) {
            self.bump();
            let rhs = operand(self)?;
            lhs = binary(op, lhs, rhs)?;
        }
        Ok(lhs)
    }

    fn peek_operator(&self, ops: &[BinaryOp]) -> Option<BinaryOp> {
        let word = self.peek_word()?;
        ops.iter().copied().find(|op| op.keyword() == word)
    }

    /// `not` binds looser than comparisons, as the SensorThings examples read:
    /// `not name eq 'a'` is `not (name eq 'a')`. (OData 4 ranks unary `not` above
    /// multiplication, which makes that input a type error unless `name` is boolean.)
    fn parse_not(&mut self) -> Result<Parsed, SyntaxError> {
        if !self.at_word("not") {
            return self.parse_comparison();
        }
        let keyword = self.bump().span;
        let operand = self.nested(keyword.clone(), Self::parse_not)?;
        unary(UnaryOp::Not, keyword, operand)
    }

    /// `additive [ compare_op additive | "in" list ]`; comparisons do not chain.
    fn parse_comparison(&mut self) -> Result<Parsed, SyntaxError> {
        let lhs = self.parse_additive()?;
        let comparison = if let Some(op) = self.peek_operator(COMPARISONS) {
            self.bump();
            let rhs = self.parse_additive()?;
            binary(op, lhs, rhs)?
        } else if self.at_word("in") {
            self.bump();
            self.parse_in_list(lhs)?
        } else {
            return Ok(lhs);
        };
        if self.peek_operator(COMPARISONS).is_some() || self.at_word("in") {
            return Err(SyntaxError::invalid(
                "comparison operators cannot be chained, use parentheses",
                self.peek().span.clone(),
            ));
        }
        Ok(comparison)
    }

    /// `"(" expr { "," expr } ")"` after `in`.
    fn parse_in_list(&mut self, lhs: Parsed) -> Result<Parsed, SyntaxError> {
        let open = self.expect(&Tok::LParen, "'(' after 'in'")?;
        self.nested(open, |parser| {
            let mut height = lhs.height;
            let mut list = Vec::new();
            loop {
                let item = parser.parse_expr()?;
                height = height.max(item.height);
                list.push(item.expr);
                if parser.eat(&Tok::Comma).is_none() {
                    break;
                }
            }
            let close =
                parser.expect_closing(&Tok::RParen, "',' or ')'", "an operator, ',' or ')'")?;
            let span = lhs.expr.span.start..close.end;
            Parsed::node(ExprKind::In { lhs: Box::new(lhs.expr), list }, span, height)
        })
    }

    fn parse_additive(&mut self) -> Result<Parsed, SyntaxError> {
        self.binary_level(&[BinaryOp::Add, BinaryOp::Sub], Self::parse_multiplicative)
    }

    fn parse_multiplicative(&mut self) -> Result<Parsed, SyntaxError> {
        self.binary_level(&[BinaryOp::Mul, BinaryOp::Div, BinaryOp::Mod], Self::parse_unary)
    }

    /// `"-" unary | primary`.
    fn parse_unary(&mut self) -> Result<Parsed, SyntaxError> {
        let Some(minus) = self.eat(&Tok::Minus) else {
            return self.parse_primary();
        };
        let operand = self.nested(minus.clone(), Self::parse_unary)?;
        unary(UnaryOp::Neg, minus, operand)
    }

    /// Literal, parenthesised expression, call, lambda or path.
    fn parse_primary(&mut self) -> Result<Parsed, SyntaxError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Literal(literal) => {
                self.bump();
                Ok(Parsed::leaf(ExprKind::Literal(literal), token.span))
            }
            Tok::LParen => {
                self.bump();
                self.nested(token.span.clone(), |parser| {
                    let inner = parser.parse_expr()?;
                    let close = parser.expect_closing(&Tok::RParen, "')'", "an operator or ')'")?;
                    // The parentheses belong to the span but leave no node.
                    let span = token.span.start..close.end;
                    Ok(Parsed { expr: Expr::new(inner.expr.kind, span), height: inner.height })
                })
            }
            Tok::Ident(word) => self.parse_word(word, token.span),
            Tok::Eof => Err(SyntaxError::invalid("expected expression", token.span)),
            _ => Err(self.unexpected()),
        }
    }

    /// A primary that starts with a word: keyword literal, call, lambda or path.
    fn parse_word(&mut self, word: String, span: Span) -> Result<Parsed, SyntaxError> {
        let literal = match word.as_str() {
            "true" => Some(Literal::Bool(true)),
            "false" => Some(Literal::Bool(false)),
            "null" => Some(Literal::Null),
            _ => None,
        };
        if let Some(literal) = literal {
            self.bump();
            return Ok(Parsed::leaf(ExprKind::Literal(literal), span));
        }
        if RESERVED.contains(&word.as_str()) || word.starts_with('$') {
            return Err(self.unexpected());
        }
        if self.peek_second().tok == Tok::LParen {
            return self.parse_call(&word, span);
        }
        self.parse_path_or_lambda()
    }

    /// `name "(" [ expr { "," expr } ] ")"` with the name and argument count checked.
    fn parse_call(&mut self, name: &str, name_span: Span) -> Result<Parsed, SyntaxError> {
        let Some(function) = Function::from_name(name) else {
            return Err(SyntaxError::invalid(format!("unknown function '{name}'"), name_span));
        };
        self.bump(); // name
        self.bump(); // "("
        self.nested(name_span.clone(), |parser| {
            let mut args = Vec::new();
            let mut height = 0;
            let close = match parser.eat(&Tok::RParen) {
                Some(close) => close,
                None => {
                    loop {
                        let arg = parser.parse_expr()?;
                        height = height.max(arg.height);
                        args.push(arg.expr);
                        if parser.eat(&Tok::Comma).is_none() {
                            break;
                        }
                    }
                    parser.expect_closing(&Tok::RParen, "',' or ')'", "an operator, ',' or ')'")?
                }
            };
            let span = name_span.start..close.end;
            if !function.arity().contains(&args.len()) {
                return Err(SyntaxError::invalid(
                    format!(
                        "function '{name}' takes {}, got {}",
                        function.describe_arity(),
                        args.len()
                    ),
                    span,
                ));
            }
            Parsed::node(ExprKind::Call { function, args }, span, height)
        })
    }

    /// `identifier { "/" segment }`, ending in a lambda when the last segment is `any` or
    /// `all` followed by `(`.
    fn parse_path_or_lambda(&mut self) -> Result<Parsed, SyntaxError> {
        let first = self.bump();
        let Tok::Ident(word) = first.tok else { return Err(self.unexpected()) };
        let mut segments = vec![word];
        let mut span = first.span;
        while let Some(slash) = self.eat_path_slash(span.end) {
            let token = self.peek().clone();
            let segment = match token.tok {
                _ if !self.next_starts_at(slash.end) => {
                    return Err(self.expected("a property name after '/'"));
                }
                Tok::Ident(segment) if !segment.starts_with('$') => segment,
                Tok::Ident(_) => return Err(self.unexpected()),
                _ => return Err(self.expected("a property name after '/'")),
            };
            self.bump();
            let quantifier = match segment.as_str() {
                "any" => Some(Quantifier::Any),
                "all" => Some(Quantifier::All),
                _ => None,
            };
            if let Some(quantifier) = quantifier.filter(|_| self.at(&Tok::LParen)) {
                return self.parse_lambda(segments, quantifier, span.start);
            }
            segments.push(segment);
            span.end = token.span.end;
        }
        Ok(Parsed::leaf(ExprKind::Path(segments), span))
    }

    /// `"(" [ variable ":" expr ] ")"` after `collection/any` or `collection/all`.
    fn parse_lambda(
        &mut self,
        collection: Vec<String>,
        quantifier: Quantifier,
        start: usize,
    ) -> Result<Parsed, SyntaxError> {
        let open = self.bump().span;
        self.nested(open.clone(), |parser| {
            if let Some(close) = parser.eat(&Tok::RParen) {
                if quantifier == Quantifier::All {
                    return Err(SyntaxError::invalid(
                        "'all' needs a predicate, as in 'all(x: x/result gt 0)'",
                        open.start..close.end,
                    ));
                }
                let kind = ExprKind::Lambda { collection, quantifier, predicate: None };
                return Ok(Parsed::leaf(kind, start..close.end));
            }
            let variable = match parser.peek_word() {
                Some(word) if is_plain_identifier(word) => word.to_owned(),
                _ => return Err(parser.expected("a lambda variable name")),
            };
            parser.bump();
            parser.expect(&Tok::Colon, "':' after the lambda variable")?;
            let body = parser.parse_expr()?;
            let close = parser.expect_closing(&Tok::RParen, "')'", "an operator or ')'")?;
            let predicate = LambdaPredicate { variable, body: Box::new(body.expr) };
            let kind = ExprKind::Lambda { collection, quantifier, predicate: Some(predicate) };
            Parsed::node(kind, start..close.end, body.height)
        })
    }
}

fn binary(op: BinaryOp, lhs: Parsed, rhs: Parsed) -> Result<Parsed, SyntaxError> {
    let span = lhs.expr.span.start..rhs.expr.span.end;
    let height = lhs.height.max(rhs.height);
    let kind = ExprKind::Binary { op, lhs: Box::new(lhs.expr), rhs: Box::new(rhs.expr) };
    Parsed::node(kind, span, height)
}

fn unary(op: UnaryOp, operator: Span, operand: Parsed) -> Result<Parsed, SyntaxError> {
    let span = operator.start..operand.expr.span.end;
    let kind = ExprKind::Unary { op, operand: Box::new(operand.expr) };
    Parsed::node(kind, span, operand.height)
}

pub(crate) fn too_deep(span: Span) -> SyntaxError {
    SyntaxError::too_deep(format!("nesting too deep (more than {MAX_DEPTH} levels)"), span)
}

/// A name usable as a lambda variable: no dots, no `@`/`$`, not a keyword.
fn is_plain_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&word)
}

/// ` (keywords are lowercase: 'and')` when `word` is a keyword in the wrong case.
pub(crate) fn lowercase_hint(word: &str) -> String {
    let lower = word.to_lowercase();
    if lower != word && KEYWORDS.contains(&lower.as_str()) {
        format!(" (keywords are lowercase: '{lower}')")
    } else {
        String::new()
    }
}
