//! A readable, indented dump of an [`Expr`] with spans, for golden tests and debugging.
//!
//! ```text
//! And @0..28
//!   Eq @0..11
//!     Path name @0..4
//!     String "a" @8..11
//!   Gt @16..28
//!     ...
//! ```

use std::fmt::{self, Write as _};

use crate::ast::{Expr, ExprKind, Literal, UnaryOp};

impl Expr {
    /// The tree, one node per line, children indented by two spaces, each line ending in
    /// the node's span.
    pub fn to_tree(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = write_tree(&mut out, self, 0);
        out
    }
}

fn write_tree(out: &mut String, expr: &Expr, indent: usize) -> fmt::Result {
    let pad = "  ".repeat(indent);
    let span = format!("@{}..{}", expr.span.start, expr.span.end);
    match &expr.kind {
        ExprKind::Literal(literal) => writeln!(out, "{pad}{} {span}", describe_literal(literal)),
        ExprKind::Path(segments) => writeln!(out, "{pad}Path {} {span}", segments.join("/")),
        ExprKind::Unary { op, operand } => {
            let name = match op {
                UnaryOp::Not => "Not",
                UnaryOp::Neg => "Neg",
            };
            writeln!(out, "{pad}{name} {span}")?;
            write_tree(out, operand, indent + 1)
        }
        ExprKind::Binary { op, lhs, rhs } => {
            writeln!(out, "{pad}{op:?} {span}")?;
            write_tree(out, lhs, indent + 1)?;
            write_tree(out, rhs, indent + 1)
        }
        ExprKind::In { lhs, list } => {
            writeln!(out, "{pad}In {span}")?;
            write_tree(out, lhs, indent + 1)?;
            writeln!(out, "{pad}  List ({} items)", list.len())?;
            list.iter().try_for_each(|item| write_tree(out, item, indent + 2))
        }
        ExprKind::Call { function, args } => {
            writeln!(out, "{pad}Call {} {span}", function.name())?;
            args.iter().try_for_each(|arg| write_tree(out, arg, indent + 1))
        }
        ExprKind::Lambda { collection, quantifier, predicate } => {
            let collection = collection.join("/");
            let keyword = quantifier.keyword();
            match predicate {
                None => writeln!(out, "{pad}Lambda {collection}/{keyword}() {span}"),
                Some(predicate) => {
                    let variable = &predicate.variable;
                    writeln!(out, "{pad}Lambda {collection}/{keyword}({variable}:) {span}")?;
                    write_tree(out, &predicate.body, indent + 1)
                }
            }
        }
    }
}

fn describe_literal(literal: &Literal) -> String {
    match literal {
        Literal::Null => "Null".to_owned(),
        Literal::Bool(value) => format!("Bool {value}"),
        Literal::Int(value) => format!("Int {value}"),
        Literal::Decimal { value, text } => format!("Decimal {value:?} text={text:?}"),
        Literal::String(text) => format!("String {text:?}"),
        Literal::DateTimeOffset(value) => format!(
            "DateTimeOffset {value} (offset {:+} min, {} ns)",
            value.offset_minutes, value.time.nanosecond
        ),
        Literal::Date(value) => format!("Date {value}"),
        Literal::TimeOfDay(value) => format!("TimeOfDay {value} ({} ns)", value.nanosecond),
        Literal::Duration(value) => format!("Duration {value}"),
        Literal::Geography(wkt) => format!("Geography {wkt:?}"),
        Literal::Geometry(wkt) => format!("Geometry {wkt:?}"),
    }
}
