//! The lexer: turns one option value into [`Token`]s with byte spans.
//!
//! One token set serves every option, so `$expand=A($filter=name eq 'x;y';$top=1)` is lexed
//! once and a `;` or `)` inside a string can never end an option early.
//!
//! ```text
//! word     identifiers, keywords, `$filter`, `@iot.id`, `geo.distance`   -> Ident
//! run      42  -1.5e3  2015-03-01T00:00:00Z  2015-03-01  12:30:00       -> Literal
//! string   'it''s'   duration'P1D'   geography'POINT(1 2)'               -> Literal
//! punct    ( ) , / : ; = -
//! ```

use crate::ast::{Literal, Span};
use crate::error::SyntaxError;
use crate::literal::{is_run_char, parse_duration, scan_numeric_run};

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// A word: property names, keywords (`and`, `eq`, `asc`, `true`...), function names,
    /// `$`-options, `@iot.id`. Keywords are recognised by the parser, by context.
    Ident(String),
    /// A literal that the lexer could decide on its own.
    Literal(Literal),
    LParen,
    RParen,
    Comma,
    Slash,
    Colon,
    Semicolon,
    Equals,
    /// `-` not directly followed by a digit: negation. `-5` is an integer literal.
    Minus,
    /// End of input; always the last token.
    Eof,
}

/// A token and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) span: Span,
}

/// Lexes `input` completely; the last token is always [`Tok::Eof`].
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut lexer = Lexer { input, pos: 0, tokens: Vec::new() };
    lexer.run()?;
    Ok(lexer.tokens)
}

struct Lexer<'a> {
    input: &'a str,
    /// Byte offset of the next character; always on a char boundary.
    pos: usize,
    tokens: Vec<Token>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.input.get(self.pos..)?.chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.input.get(self.pos..)?.chars().nth(1)
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.tokens.push(Token { tok, span: start..self.pos });
    }

    /// Advances while `accept` holds and returns the consumed text.
    fn take_while(&mut self, accept: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !accept(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.input.get(start..self.pos).unwrap_or("")
    }

    fn run(&mut self) -> Result<(), SyntaxError> {
        while let Some(c) = self.peek() {
            let start = self.pos;
            // A path segment directly after `/` may start with a digit (`properties/2020`).
            let after_slash = matches!(
                self.tokens.last(),
                Some(Token { tok: Tok::Slash, span }) if span.end == start
            );
            let punct = match c {
                '(' => Some(Tok::LParen),
                ')' => Some(Tok::RParen),
                ',' => Some(Tok::Comma),
                '/' => Some(Tok::Slash),
                ':' => Some(Tok::Colon),
                ';' => Some(Tok::Semicolon),
                '=' => Some(Tok::Equals),
                _ => None,
            };
            if let Some(tok) = punct {
                self.pos += 1;
                self.push(tok, start);
            } else if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else if c == '\'' {
                let text = self.string(start, "string")?;
                self.push(Tok::Literal(Literal::String(text)), start);
            } else if is_word_start(c) || (after_slash && c.is_alphanumeric()) {
                self.word(start)?;
            } else if c.is_ascii_digit()
                || (matches!(c, '-' | '+')
                    && self.peek_second().is_some_and(|d| d.is_ascii_digit()))
            {
                // The first character is a digit or an ASCII sign.
                self.pos += 1;
                self.take_while(is_run_char);
                let text = self.input.get(start..self.pos).unwrap_or("");
                let literal = scan_numeric_run(text)
                    .map_err(|message| SyntaxError::invalid(message, start..self.pos))?;
                self.push(Tok::Literal(literal), start);
            } else if c == '-' {
                self.pos += 1;
                self.push(Tok::Minus, start);
            } else {
                return Err(SyntaxError::invalid(
                    format!("unexpected character '{c}'"),
                    start..start + c.len_utf8(),
                ));
            }
        }
        let end = self.input.len();
        self.tokens.push(Token { tok: Tok::Eof, span: end..end });
        Ok(())
    }

    /// An identifier, or a typed literal such as `duration'P1D'` when a known prefix is
    /// directly followed by a quote.
    fn word(&mut self, start: usize) -> Result<(), SyntaxError> {
        // The first character is accepted by the caller; `@` and `$` only lead.
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
        let word = self.input.get(start..self.pos).unwrap_or("").to_owned()
            + self.take_while(is_word_char);
        if matches!(word.as_str(), "@" | "$") {
            return Err(SyntaxError::invalid(
                format!("unexpected character '{word}'"),
                start..self.pos,
            ));
        }
        if self.peek() != Some('\'') {
            self.push(Tok::Ident(word), start);
            return Ok(());
        }
        let literal = match word.as_str() {
            "duration" => {
                let text = self.string(start, "duration")?;
                let duration = parse_duration(&text).map_err(|reason| {
                    SyntaxError::invalid(
                        format!("invalid duration '{text}' ({reason})"),
                        start..self.pos,
                    )
                })?;
                Literal::Duration(duration)
            }
            "geography" => Literal::Geography(self.string(start, "geography")?),
            "geometry" => Literal::Geometry(self.string(start, "geometry")?),
            // Not a literal prefix: an identifier followed by a string, which the parser
            // reports in context (OData requires a space after keywords anyway).
            _ => {
                self.push(Tok::Ident(word), start);
                return Ok(());
            }
        };
        self.push(Tok::Literal(literal), start);
        Ok(())
    }

    /// A quoted string starting at the current `'`, with `''` unescaped; `start` is where the
    /// whole token started (for a typed literal, its prefix).
    fn string(&mut self, start: usize, what: &str) -> Result<String, SyntaxError> {
        self.pos += 1; // opening quote
        let mut text = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(SyntaxError::invalid(
                    format!("unterminated {what} literal"),
                    start..self.input.len(),
                ));
            };
            self.pos += c.len_utf8();
            if c != '\'' {
                text.push(c);
            } else if self.peek() == Some('\'') {
                self.pos += 1;
                text.push('\'');
            } else {
                return Ok(text);
            }
        }
    }
}

/// Letters (any script), `_`, and the prefixes of `$filter` and `@iot.id`.
fn is_word_start(c: char) -> bool {
    c.is_alphabetic() || matches!(c, '_' | '@' | '$')
}

/// Letters, digits, `_`, and `.` for `geo.distance` and `@iot.id`.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: &str) {
        let actual = match tokenize(input) {
            Ok(tokens) => tokens
                .iter()
                .map(|t| format!("{:?}@{}..{}", t.tok, t.span.start, t.span.end))
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => format!("error: {} at {:?}", e.message, e.span),
        };
        assert_eq!(actual, expect, "for {input:?}");
    }

    #[test]
    fn punctuation_and_words() {
        check(
            "a/b eq -x",
            r#"Ident("a")@0..1 Slash@1..2 Ident("b")@2..3 Ident("eq")@4..6 Minus@7..8 Ident("x")@8..9 Eof@9..9"#,
        );
        check("@iot.id", r#"Ident("@iot.id")@0..7 Eof@7..7"#);
        check(
            "$top=1;",
            r#"Ident("$top")@0..4 Equals@4..5 Literal(Int(1))@5..6 Semicolon@6..7 Eof@7..7"#,
        );
        check("a/ 2", r#"Ident("a")@0..1 Slash@1..2 Literal(Int(2))@3..4 Eof@4..4"#);
        check(
            "properties/2020",
            r#"Ident("properties")@0..10 Slash@10..11 Ident("2020")@11..15 Eof@15..15"#,
        );
        check("température", r#"Ident("température")@0..12 Eof@12..12"#);
    }

    #[test]
    fn strings() {
        check("'it''s'", r#"Literal(String("it's"))@0..7 Eof@7..7"#);
        check("'é'", r#"Literal(String("é"))@0..4 Eof@4..4"#);
        check("'abc", "error: unterminated string literal at 0..4");
        check("x eq 'abc", "error: unterminated string literal at 5..9");
        check("geography'POINT(1 2)'", r#"Literal(Geography("POINT(1 2)"))@0..21 Eof@21..21"#);
        check("geometry'POINT(1", "error: unterminated geometry literal at 0..16");
        check(
            "duration'P1X'",
            "error: invalid duration 'P1X' (expected ISO 8601 [-]PnYnMnWnDTnHnMnS) at 0..13",
        );
        check("eq'a'", r#"Ident("eq")@0..2 Literal(String("a"))@2..5 Eof@5..5"#);
    }

    #[test]
    fn bad_characters() {
        check("a * b", "error: unexpected character '*' at 2..3");
        check("€", "error: unexpected character '€' at 0..3");
        check("@ x", "error: unexpected character '@' at 0..1");
        check("+x", "error: unexpected character '+' at 0..1");
    }
}
