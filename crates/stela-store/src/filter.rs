//! Lowering of `$filter` and `$orderby` expressions to parameterised SQL, for SQLite and for
//! PostgreSQL (the [`pg`] forms, which give SQLite's answers on `timestamptz`, `jsonb` and
//! PostGIS columns).
//!
//! Every literal becomes a bound parameter (`?N`); only names from the model (tables, columns)
//! and fixed SQL text are written into the statement.
//!
//! Typing follows the standard's comparison rules: times compare as instants (an interval
//! `phenomenonTime` by its start and end), a `result` compared with a string compares as a
//! string (`result gt '3'`), with a number only among numeric results. Paths through relations
//! (`Datastream/Thing/name`, `Thing/Locations/name`) become an `EXISTS` over the joined
//! relations, which gives the any-match semantics on to-many relations.

use std::fmt::Write as _;

use rusqlite::types::Value as Sql;
use stela_model::Relation;
use stela_model::{EntityType, Link, PropertyKind};
use stela_query::{
    BinaryOp, Expr, ExprKind, Function, LambdaPredicate, Literal, OrderBy, Quantifier, UnaryOp,
};

use crate::StoreError;
use crate::db::Dialect;

/// The SQL type of a lowered expression, as far as the comparison rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
    Bool,
    /// Microseconds since the epoch.
    Time,
    /// An interval property: `sql` is its start, `end` its end.
    Interval,
    /// An Observation result (typed column `result_type` beside it).
    Result,
    /// A value inside a JSON document (`json_extract`), of any SQL type.
    JsonValue,
    /// A whole JSON document or geometry.
    Json,
    Null,
    Date,
    TimeOfDay,
    /// GeoJSON text of a stored geometry, or WKT text of a literal.
    Geometry,
}

#[derive(Debug, Clone)]
struct Lowered {
    sql: String,
    kind: Kind,
    /// For `Kind::Interval`: the SQL of the end.
    end: Option<String>,
    /// For `Kind::Result`: the SQL of the result type code.
    result_type: Option<String>,
}

impl Lowered {
    fn new(sql: String, kind: Kind) -> Lowered {
        Lowered { sql, kind, end: None, result_type: None }
    }
}

/// Per-statement state: parameters, aliases, the joins of relation paths met in the current
/// predicate.
struct Context<'a> {
    dialect: Dialect,
    params: &'a mut Vec<Sql>,
    aliases: usize,
    option: &'static str,
    /// `FROM … WHERE …` pieces of the relation paths of the predicate being lowered.
    joins: Vec<(String, String)>,
    /// The entity type of the collection being filtered (alias `t`).
    root: EntityType,
    /// Lambda variables in scope: name, entity type, SQL alias.
    variables: Vec<(String, EntityType, String)>,
}

const MAX_DEPTH: usize = 64;

/// The PostgreSQL type of a text parameter: text in the binary order SQLite compares in.
const TEXT_C: &str = "text COLLATE \"C\"";

fn true_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "1",
        Dialect::Postgres => "TRUE",
    }
}

/// How the FROM items of a relation path are joined (their conditions are in the WHERE):
/// PostgreSQL wants no JOIN without ON.
fn cross_join(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => " JOIN ",
        Dialect::Postgres => " CROSS JOIN ",
    }
}

fn false_sql(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "0",
        Dialect::Postgres => "FALSE",
    }
}

impl Context<'_> {
    fn param(&mut self, value: Sql) -> String {
        self.params.push(value);
        format!("?{}", self.params.len())
    }

    fn error(&self, message: impl Into<String>) -> StoreError {
        StoreError::query(self.option, message)
    }

    fn alias(&mut self) -> String {
        self.aliases += 1;
        format!("f{}", self.aliases)
    }

    fn postgres(&self) -> bool {
        self.dialect == Dialect::Postgres
    }

    /// A parameter, typed on PostgreSQL (which cannot always infer a parameter's type from
    /// its context, e.g. `$1 = $2`, and binds by the inferred type).
    fn typed_param(&mut self, value: Sql, pg_type: &str) -> String {
        let param = self.param(value);
        match (self.dialect, pg_type) {
            (Dialect::Sqlite, _) => param,
            (Dialect::Postgres, TEXT_C) => format!("CAST({param} AS text) COLLATE \"C\""),
            (Dialect::Postgres, _) => format!("CAST({param} AS {pg_type})"),
        }
    }
}

/// Lowers a `$filter` to a boolean SQL expression over the alias `t` of `ty`.
pub(crate) fn lower_filter(
    dialect: Dialect,
    ty: EntityType,
    expr: &Expr,
    params: &mut Vec<Sql>,
) -> Result<String, StoreError> {
    let mut context = Context {
        dialect,
        params,
        aliases: 0,
        option: "$filter",
        joins: Vec::new(),
        root: ty,
        variables: Vec::new(),
    };
    predicate(&mut context, ty, expr, 0)
}

/// Lowers `$orderby` to an `ORDER BY` list, ending with the id as a stable tiebreak.
pub(crate) fn lower_orderby(
    dialect: Dialect,
    ty: EntityType,
    orderby: &[OrderBy],
    params: &mut Vec<Sql>,
) -> Result<String, StoreError> {
    let mut context = Context {
        dialect,
        params,
        aliases: 0,
        option: "$orderby",
        joins: Vec::new(),
        root: ty,
        variables: Vec::new(),
    };
    let mut parts = Vec::new();
    for key in orderby {
        let lowered = value(&mut context, ty, "t", &key.expr, 0)?;
        let postgres = context.postgres();
        let sort_keys = if postgres { pg::sort_keys(&lowered) } else { vec![lowered.sql] };
        let joins = std::mem::take(&mut context.joins);
        let (from, conditions): (Vec<_>, Vec<_>) = joins.into_iter().unzip();
        for sort_key in sort_keys {
            let sql = if from.is_empty() {
                sort_key
            } else {
                // A key through relations: the first matching related value.
                format!(
                    "(SELECT {sort_key} FROM {} WHERE {} LIMIT 1)",
                    from.join(cross_join(context.dialect)),
                    conditions.join(" AND ")
                )
            };
            // SQLite sorts NULLs first ascending and last descending; PostgreSQL the opposite.
            let direction = match (key.descending, postgres) {
                (false, false) => "",
                (true, false) => " DESC",
                (false, true) => " NULLS FIRST",
                (true, true) => " DESC NULLS LAST",
            };
            parts.push(format!("{sql}{direction}"));
        }
    }
    parts.push("t.id".into());
    Ok(parts.join(", "))
}

/// A boolean expression. Relation paths met in a comparison are wrapped in `EXISTS`.
fn predicate(
    cx: &mut Context<'_>,
    ty: EntityType,
    expr: &Expr,
    depth: usize,
) -> Result<String, StoreError> {
    if depth > MAX_DEPTH {
        return Err(cx.error("expression nested too deeply"));
    }
    match &expr.kind {
        ExprKind::Binary { op: BinaryOp::And, lhs, rhs } => Ok(format!(
            "({} AND {})",
            predicate(cx, ty, lhs, depth + 1)?,
            predicate(cx, ty, rhs, depth + 1)?
        )),
        ExprKind::Binary { op: BinaryOp::Or, lhs, rhs } => Ok(format!(
            "({} OR {})",
            predicate(cx, ty, lhs, depth + 1)?,
            predicate(cx, ty, rhs, depth + 1)?
        )),
        ExprKind::Unary { op: UnaryOp::Not, operand } => {
            let operand = predicate(cx, ty, operand, depth + 1)?;
            Ok(format!("(NOT COALESCE({operand}, {}))", false_sql(cx.dialect)))
        }
        _ => {
            let outer = std::mem::take(&mut cx.joins);
            let lowered = value(cx, ty, "t", expr, depth + 1)?;
            let sql = match lowered.kind {
                Kind::Bool | Kind::JsonValue | Kind::Number | Kind::Null if cx.postgres() => {
                    pg::condition(&lowered)
                }
                Kind::Result if cx.postgres() => pg::condition(&lowered),
                Kind::Bool | Kind::JsonValue | Kind::Number | Kind::Null => lowered.sql,
                Kind::Result => {
                    format!("({} = 1 AND {})", lowered.result_type.unwrap_or_default(), lowered.sql)
                }
                _ => return Err(cx.error(format!("'{expr}' is not a condition"))),
            };
            let joins = std::mem::replace(&mut cx.joins, outer);
            if joins.is_empty() {
                Ok(sql)
            } else {
                let (from, conditions): (Vec<_>, Vec<_>) = joins.into_iter().unzip();
                Ok(format!(
                    "EXISTS (SELECT 1 FROM {} WHERE {} AND {sql})",
                    from.join(cross_join(cx.dialect)),
                    conditions.join(" AND ")
                ))
            }
        }
    }
}

fn value(
    cx: &mut Context<'_>,
    ty: EntityType,
    alias: &str,
    expr: &Expr,
    depth: usize,
) -> Result<Lowered, StoreError> {
    if depth > MAX_DEPTH {
        return Err(cx.error("expression nested too deeply"));
    }
    match &expr.kind {
        ExprKind::Literal(literal) => literal_value(cx, literal),
        ExprKind::Path(segments) => path(cx, ty, alias, segments),
        ExprKind::Unary { op: UnaryOp::Neg, operand } => {
            let inner = value(cx, ty, alias, operand, depth + 1)?;
            numeric(cx, &inner, expr)?;
            let sql = if cx.postgres() { pg::number(cx, &inner, expr)? } else { inner.sql };
            Ok(Lowered::new(format!("(-{sql})"), Kind::Number))
        }
        ExprKind::Unary { op: UnaryOp::Not, .. }
        | ExprKind::Binary { op: BinaryOp::And | BinaryOp::Or, .. } => {
            Ok(Lowered::new(predicate(cx, ty, expr, depth + 1)?, Kind::Bool))
        }
        ExprKind::Binary { op, lhs, rhs } if op.is_comparison() => {
            let left = value(cx, ty, alias, lhs, depth + 1)?;
            let right = value(cx, ty, alias, rhs, depth + 1)?;
            comparison(cx, *op, left, right).map(|sql| Lowered::new(sql, Kind::Bool))
        }
        ExprKind::Binary { op, lhs, rhs } => {
            let left = value(cx, ty, alias, lhs, depth + 1)?;
            let right = value(cx, ty, alias, rhs, depth + 1)?;
            arithmetic(cx, *op, left, right, expr)
        }
        ExprKind::In { lhs, list } => {
            let left = value(cx, ty, alias, lhs, depth + 1)?;
            let mut alternatives = Vec::new();
            for item in list {
                let right = value(cx, ty, alias, item, depth + 1)?;
                alternatives.push(comparison(cx, BinaryOp::Eq, left.clone(), right)?);
            }
            if alternatives.is_empty() {
                return Ok(Lowered::new(false_sql(cx.dialect).into(), Kind::Bool));
            }
            Ok(Lowered::new(format!("({})", alternatives.join(" OR ")), Kind::Bool))
        }
        ExprKind::Call { function, args } => call(cx, ty, alias, *function, args, expr, depth),
        ExprKind::Lambda { collection, quantifier, predicate: body } => {
            lambda(cx, ty, alias, collection, *quantifier, body.as_ref(), expr, depth)
        }
    }
}

fn literal_value(cx: &mut Context<'_>, literal: &Literal) -> Result<Lowered, StoreError> {
    Ok(match literal {
        Literal::Null => Lowered::new("NULL".into(), Kind::Null),
        Literal::Bool(b) => Lowered::new(
            match (cx.dialect, *b) {
                (Dialect::Sqlite, true) => "1".into(),
                (Dialect::Sqlite, false) => "0".into(),
                (Dialect::Postgres, true) => "TRUE".into(),
                (Dialect::Postgres, false) => "FALSE".into(),
            },
            Kind::Bool,
        ),
        Literal::Int(i) => Lowered::new(cx.typed_param(Sql::Integer(*i), "bigint"), Kind::Number),
        Literal::Decimal { value, .. } => {
            Lowered::new(cx.typed_param(Sql::Real(*value), "double precision"), Kind::Number)
        }
        // Text compares as SQLite's (binary) on PostgreSQL too: collation "C".
        Literal::String(s) => {
            Lowered::new(cx.typed_param(Sql::Text(s.clone()), TEXT_C), Kind::Text)
        }
        Literal::DateTimeOffset(dt) => {
            let micros = date_time_micros(dt)
                .ok_or_else(|| cx.error(format!("date-time out of range: {literal:?}")))?;
            Lowered::new(cx.typed_param(Sql::Integer(micros), "timestamptz"), Kind::Time)
        }
        Literal::Date(d) => Lowered::new(
            cx.typed_param(Sql::Text(format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)), TEXT_C),
            Kind::Date,
        ),
        Literal::TimeOfDay(t) => Lowered::new(
            cx.typed_param(
                Sql::Text(format!("{:02}:{:02}:{:02}", t.hour, t.minute, t.second)),
                TEXT_C,
            ),
            Kind::TimeOfDay,
        ),
        Literal::Duration(d) => {
            if d.years != 0 || d.months != 0 {
                return Err(
                    cx.error("durations with years or months have no fixed length; use days")
                );
            }
            let seconds =
                d.weeks * 604_800 + d.days * 86_400 + d.hours * 3_600 + d.minutes * 60 + d.seconds;
            let micros = i64::try_from(seconds)
                .ok()
                .and_then(|s| s.checked_mul(1_000_000))
                .and_then(|m| m.checked_add(i64::from(d.nanoseconds / 1_000)))
                .ok_or_else(|| cx.error("duration out of range"))?;
            Lowered::new(
                cx.typed_param(Sql::Integer(if d.negative { -micros } else { micros }), "bigint"),
                Kind::Number,
            )
        }
        Literal::Geography(wkt) | Literal::Geometry(wkt) => {
            if crate::spatial::parse_geometry(wkt).is_none() {
                return Err(cx.error(format!("'{wkt}' is not a valid WKT geometry")));
            }
            let param = cx.param(Sql::Text(wkt.clone()));
            let sql = if cx.postgres() {
                format!("ST_GeomFromText(CAST({param} AS text), 4326)")
            } else {
                param
            };
            Lowered::new(sql, Kind::Geometry)
        }
    })
}

fn date_time_micros(dt: &stela_query::DateTimeOffset) -> Option<i64> {
    let month = time::Month::try_from(dt.date.month).ok()?;
    let date = time::Date::from_calendar_date(dt.date.year, month, dt.date.day).ok()?;
    let clock =
        time::Time::from_hms_nano(dt.time.hour, dt.time.minute, dt.time.second, dt.time.nanosecond)
            .ok()?;
    let offset = time::UtcOffset::from_whole_seconds(i32::from(dt.offset_minutes) * 60).ok()?;
    let instant = time::PrimitiveDateTime::new(date, clock).assume_offset(offset);
    i64::try_from(instant.unix_timestamp_nanos() / 1_000).ok()
}

/// A property path, possibly through relations and into JSON.
fn path(
    cx: &mut Context<'_>,
    ty: EntityType,
    alias: &str,
    segments: &[String],
) -> Result<Lowered, StoreError> {
    let Some(first) = segments.first() else {
        return Err(cx.error("empty path"));
    };
    let rest = &segments[1..];
    if let Some((_, var_ty, var_alias)) =
        cx.variables.iter().rev().find(|(name, _, _)| name == first).cloned()
    {
        if rest.is_empty() {
            return Err(cx.error(format!(
                "name a property of the lambda variable '{first}', e.g. {first}/id"
            )));
        }
        return path(cx, var_ty, &var_alias, rest);
    }
    if first == "id" || first == "@iot.id" {
        if !rest.is_empty() {
            return Err(cx.error(format!("'{first}' has no members")));
        }
        return Ok(Lowered::new(format!("{alias}.id"), Kind::Number));
    }
    if let Some(relation) = ty.relation(first) {
        if rest.is_empty() {
            return Err(cx.error(format!(
                "'{first}' is a relation; name one of its properties, e.g. {first}/id"
            )));
        }
        let (from, condition, next) = join_relation(cx, relation, alias);
        cx.joins.push((from, condition));
        return path(cx, relation.target, &next, rest);
    }
    let Some(property) = ty.property(first) else {
        return Err(cx.error(format!("{ty} has no property or relation '{first}'")));
    };
    let column = format!("{alias}.{}", property.column);
    match property.kind {
        PropertyKind::Json
        | PropertyKind::JsonObject
        | PropertyKind::JsonArray
        | PropertyKind::Geometry
        | PropertyKind::Result
            if !rest.is_empty() && cx.postgres() =>
        {
            Ok(Lowered::new(
                pg::json_member(cx, alias, &column, property.kind, rest),
                Kind::JsonValue,
            ))
        }
        PropertyKind::Json
        | PropertyKind::JsonObject
        | PropertyKind::JsonArray
        | PropertyKind::Geometry
        | PropertyKind::Result
            if !rest.is_empty() =>
        {
            let mut json_path = String::from("$");
            for segment in rest {
                match segment.parse::<u32>() {
                    Ok(index)
                        if property.kind == PropertyKind::Result
                            || segment.starts_with(|c: char| c.is_ascii_digit()) =>
                    {
                        let _ = write!(json_path, "[{index}]");
                    }
                    _ => {
                        let _ = write!(json_path, ".\"{}\"", segment.replace('"', "\\\""));
                    }
                }
            }
            let path_param = cx.param(Sql::Text(json_path));
            let document = if property.kind == PropertyKind::Result {
                format!("CASE WHEN {alias}.result_type = 4 THEN {alias}.result END")
            } else {
                column
            };
            Ok(Lowered::new(format!("json_extract({document}, {path_param})"), Kind::JsonValue))
        }
        _ if !rest.is_empty() => {
            Err(cx.error(format!("'{first}' has no members ('{}')", rest.join("/"))))
        }
        PropertyKind::Text => Ok(Lowered::new(column, Kind::Text)),
        PropertyKind::Json | PropertyKind::JsonObject | PropertyKind::JsonArray => {
            Ok(Lowered::new(column, Kind::Json))
        }
        // PostgreSQL keeps a PostGIS geometry of the GeoJSON beside it.
        PropertyKind::Geometry if cx.postgres() => {
            Ok(Lowered::new(format!("{column}_geom"), Kind::Geometry))
        }
        PropertyKind::Geometry => Ok(Lowered::new(column, Kind::Geometry)),
        PropertyKind::Instant => Ok(Lowered::new(column, Kind::Time)),
        PropertyKind::Interval | PropertyKind::InstantOrInterval => {
            let start = format!("{column}_start");
            let end = if property.kind == PropertyKind::InstantOrInterval {
                format!("COALESCE({column}_end, {column}_start)")
            } else {
                format!("{column}_end")
            };
            Ok(Lowered { sql: start, kind: Kind::Interval, end: Some(end), result_type: None })
        }
        PropertyKind::Result => Ok(Lowered {
            sql: column,
            kind: Kind::Result,
            end: None,
            result_type: Some(format!("{alias}.result_type")),
        }),
    }
}

fn operator(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Eq => "=",
        BinaryOp::Ne => "<>",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Mod => "%",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
    }
}

fn flip(op: BinaryOp) -> BinaryOp {
    match op {
        BinaryOp::Gt => BinaryOp::Lt,
        BinaryOp::Ge => BinaryOp::Le,
        BinaryOp::Lt => BinaryOp::Gt,
        BinaryOp::Le => BinaryOp::Ge,
        other => other,
    }
}

fn comparison(
    cx: &mut Context<'_>,
    op: BinaryOp,
    left: Lowered,
    right: Lowered,
) -> Result<String, StoreError> {
    use Kind as K;
    let sql_op = operator(op);
    // Null: `eq null` / `ne null`.
    if right.kind == K::Null || left.kind == K::Null {
        let other = if right.kind == K::Null { &left } else { &right };
        let test = match other.kind {
            K::Result => format!("{} = 0", other.result_type.clone().unwrap_or_default()),
            // A JSON null is SQL NULL as SQLite's json_extract gives it.
            K::JsonValue if cx.postgres() => format!("({} #>> '{{}}') IS NULL", other.sql),
            _ => format!("{} IS NULL", other.sql),
        };
        return match op {
            BinaryOp::Eq => Ok(format!("({test})")),
            BinaryOp::Ne => Ok(format!("(NOT ({test}))")),
            _ => Err(cx.error("null can only be compared with eq and ne")),
        };
    }
    // Put the more specific side on the left.
    if matches!(right.kind, K::Interval | K::Result)
        && !matches!(left.kind, K::Interval | K::Result)
    {
        return comparison(cx, flip(op), right, left);
    }
    let postgres = cx.postgres();
    match (left.kind, right.kind) {
        (K::Interval, K::Time | K::Interval) if postgres => {
            comparison_of_intervals(cx, op, left, right).map(|sql| format!("({sql})"))
        }
        (K::Interval, K::Time | K::Interval) => comparison_of_intervals(cx, op, left, right),
        (K::Result, K::Text | K::Number | K::JsonValue | K::Bool | K::Result) if postgres => {
            pg::result_comparison(cx, op, &left, &right)
        }
        (K::Result, K::Text) => {
            // The standard casts a non-string result to a string for a string comparison.
            let code = left.result_type.unwrap_or_default();
            let text = format!(
                "CASE {code} WHEN 1 THEN (CASE WHEN {0} THEN 'true' ELSE 'false' END) ELSE CAST({0} AS TEXT) END",
                left.sql
            );
            Ok(format!("({code} <> 0 AND {text} {sql_op} {})", right.sql))
        }
        (K::Result, K::Number | K::JsonValue) => {
            let code = left.result_type.unwrap_or_default();
            Ok(format!("({code} = 2 AND {} {sql_op} {})", left.sql, right.sql))
        }
        (K::Result, K::Bool) => {
            let code = left.result_type.unwrap_or_default();
            Ok(format!("({code} = 1 AND {} {sql_op} {})", left.sql, right.sql))
        }
        (K::Result, K::Result) => Ok(format!("{} {sql_op} {}", left.sql, right.sql)),
        (K::Result, K::Time | K::Interval) => {
            Err(cx.error("a result cannot be compared with a time"))
        }
        (K::Time | K::Interval, K::Text) | (K::Text, K::Time | K::Interval) => {
            Err(cx.error("a time can only be compared with a date-time literal such as 2015-03-01T00:00:00Z"))
        }
        (K::Geometry, _) | (_, K::Geometry) => {
            Err(cx.error("geometries are compared with spatial functions such as st_equals, not with operators"))
        }
        (K::Json, _) | (_, K::Json) => {
            Err(cx.error("a whole JSON object cannot be compared; compare one of its members, e.g. properties/name"))
        }
        (K::Text, K::Number) | (K::Number, K::Text) => {
            Err(cx.error("a string cannot be compared with a number"))
        }
        _ if postgres => pg::comparison(cx, op, &left, &right),
        _ => Ok(format!("{} {sql_op} {}", left.sql, right.sql)),
    }
}

/// An interval (the left side) compared with an instant or an interval.
fn comparison_of_intervals(
    cx: &Context<'_>,
    op: BinaryOp,
    left: Lowered,
    right: Lowered,
) -> Result<String, StoreError> {
    match right.kind {
        Kind::Time => {
            let (start, end) = (left.sql, left.end.unwrap_or_default());
            let value = right.sql;
            Ok(match op {
                BinaryOp::Eq => format!("({start} = {value} AND {end} = {value})"),
                BinaryOp::Ne => format!("(NOT ({start} = {value} AND {end} = {value}))"),
                BinaryOp::Gt => format!("{start} > {value}"),
                BinaryOp::Ge => format!("{start} >= {value}"),
                // The redundant bound on the start (start ≤ end) lets the index on the start
                // narrow the range; the end alone is an expression no index serves.
                BinaryOp::Lt => format!("({start} < {value} AND {end} < {value})"),
                BinaryOp::Le => format!("({start} <= {value} AND {end} <= {value})"),
                _ => return Err(cx.error("not a comparison")),
            })
        }
        _ => {
            let (s1, e1) = (left.sql, left.end.unwrap_or_default());
            let (s2, e2) = (right.sql, right.end.unwrap_or_default());
            Ok(match op {
                BinaryOp::Eq => format!("({s1} = {s2} AND {e1} = {e2})"),
                BinaryOp::Ne => format!("(NOT ({s1} = {s2} AND {e1} = {e2}))"),
                BinaryOp::Gt => format!("({s1} >= {e2} AND {s1} > {s2})"),
                BinaryOp::Ge => format!("{s1} >= {s2}"),
                BinaryOp::Lt => format!("({e1} <= {s2} AND {e1} < {e2})"),
                BinaryOp::Le => format!("{e1} <= {e2}"),
                _ => return Err(cx.error("not a comparison")),
            })
        }
    }
}

fn numeric(cx: &Context<'_>, value: &Lowered, expr: &Expr) -> Result<(), StoreError> {
    match value.kind {
        Kind::Number | Kind::JsonValue | Kind::Result | Kind::Time | Kind::Interval => Ok(()),
        _ => Err(cx.error(format!("'{expr}' is not a number"))),
    }
}

fn arithmetic(
    cx: &mut Context<'_>,
    op: BinaryOp,
    left: Lowered,
    right: Lowered,
    expr: &Expr,
) -> Result<Lowered, StoreError> {
    numeric(cx, &left, expr)?;
    numeric(cx, &right, expr)?;
    if cx.postgres() {
        return pg::arithmetic(cx, op, &left, &right, expr);
    }
    let operand = |v: &Lowered| match v.kind {
        Kind::Result => format!(
            "(CASE WHEN {} = 2 THEN {} END)",
            v.result_type.clone().unwrap_or_default(),
            v.sql
        ),
        _ => v.sql.clone(),
    };
    let (l, r) = (operand(&left), operand(&right));
    let kind = match (left.kind, right.kind, op) {
        (Kind::Time | Kind::Interval, Kind::Number, BinaryOp::Add | BinaryOp::Sub) => Kind::Time,
        (Kind::Time | Kind::Interval, Kind::Time | Kind::Interval, BinaryOp::Sub) => Kind::Number,
        _ => Kind::Number,
    };
    let sql = match op {
        BinaryOp::Div => format!("({l} * 1.0 / {r})"),
        _ => format!("({l} {} {r})", operator(op)),
    };
    Ok(Lowered::new(sql, kind))
}

fn call(
    cx: &mut Context<'_>,
    ty: EntityType,
    alias: &str,
    function: Function,
    args: &[Expr],
    expr: &Expr,
    depth: usize,
) -> Result<Lowered, StoreError> {
    let mut lowered = Vec::with_capacity(args.len());
    for arg in args {
        lowered.push(value(cx, ty, alias, arg, depth + 1)?);
    }
    if cx.postgres() {
        return pg::call(cx, function, &lowered, args, expr);
    }
    let text = |i: usize| -> String {
        lowered.get(i).map_or_else(String::new, |v: &Lowered| match v.kind {
            Kind::Result => format!("CAST({} AS TEXT)", v.sql),
            _ => v.sql.clone(),
        })
    };
    let time_of = |i: usize| -> Option<String> {
        lowered.get(i).and_then(|v: &Lowered| match v.kind {
            Kind::Time | Kind::Interval => Some(format!("({} / 1000000.0)", v.sql)),
            _ => None,
        })
    };
    let part = |format: &str| -> Result<Lowered, StoreError> {
        let time = time_of(0).ok_or_else(|| cx_error_time(expr))?;
        Ok(Lowered::new(
            format!("CAST(strftime('{format}', {time}, 'unixepoch') AS INTEGER)"),
            Kind::Number,
        ))
    };
    use Function as F;
    Ok(match function {
        F::SubstringOf => {
            Lowered::new(format!("(instr({}, {}) > 0)", text(1), text(0)), Kind::Bool)
        }
        F::Contains => Lowered::new(format!("(instr({}, {}) > 0)", text(0), text(1)), Kind::Bool),
        F::StartsWith => Lowered::new(
            format!("(substr({0}, 1, length({1})) = {1})", text(0), text(1)),
            Kind::Bool,
        ),
        F::EndsWith => Lowered::new(
            format!("(length({1}) = 0 OR substr({0}, -length({1})) = {1})", text(0), text(1)),
            Kind::Bool,
        ),
        F::Length => Lowered::new(format!("length({})", text(0)), Kind::Number),
        F::IndexOf => Lowered::new(format!("(instr({}, {}) - 1)", text(0), text(1)), Kind::Number),
        F::Substring if lowered.len() == 3 => {
            Lowered::new(format!("substr({}, {} + 1, {})", text(0), text(1), text(2)), Kind::Text)
        }
        F::Substring => Lowered::new(format!("substr({}, {} + 1)", text(0), text(1)), Kind::Text),
        F::ToLower => Lowered::new(format!("lower({})", text(0)), Kind::Text),
        F::ToUpper => Lowered::new(format!("upper({})", text(0)), Kind::Text),
        F::Trim => Lowered::new(format!("trim({})", text(0)), Kind::Text),
        F::Concat => Lowered::new(format!("({} || {})", text(0), text(1)), Kind::Text),
        F::Year => part("%Y")?,
        F::Month => part("%m")?,
        F::Day => part("%d")?,
        F::Hour => part("%H")?,
        F::Minute => part("%M")?,
        F::Second => part("%S")?,
        F::FractionalSeconds => {
            let value = lowered.first().filter(|v| matches!(v.kind, Kind::Time | Kind::Interval));
            let value = value.ok_or_else(|| cx_error_time(expr))?;
            Lowered::new(format!("(({} % 1000000) / 1000000.0)", value.sql), Kind::Number)
        }
        F::Date => {
            let time = time_of(0).ok_or_else(|| cx_error_time(expr))?;
            Lowered::new(format!("date({time}, 'unixepoch')"), Kind::Date)
        }
        F::Time => {
            let time = time_of(0).ok_or_else(|| cx_error_time(expr))?;
            Lowered::new(format!("time({time}, 'unixepoch')"), Kind::TimeOfDay)
        }
        F::TotalOffsetMinutes => {
            time_of(0).ok_or_else(|| cx_error_time(expr))?;
            // Stela stores every instant in UTC.
            Lowered::new("0".into(), Kind::Number)
        }
        F::Now => Lowered::new(
            "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)".into(),
            Kind::Time,
        ),
        F::MinDateTime => Lowered::new(cx.param(Sql::Integer(-62_135_596_800_000_000)), Kind::Time),
        F::MaxDateTime => Lowered::new(cx.param(Sql::Integer(253_402_300_799_999_999)), Kind::Time),
        F::Round => Lowered::new(format!("round({})", text(0)), Kind::Number),
        F::Floor => {
            let v = text(0);
            Lowered::new(
                format!("(CAST({v} AS INTEGER) - (CAST({v} AS INTEGER) > {v}))"),
                Kind::Number,
            )
        }
        F::Ceiling => {
            let v = text(0);
            Lowered::new(
                format!("(CAST({v} AS INTEGER) + (CAST({v} AS INTEGER) < {v}))"),
                Kind::Number,
            )
        }
        F::GeoDistance
        | F::GeoLength
        | F::GeoIntersects
        | F::StEquals
        | F::StDisjoint
        | F::StTouches
        | F::StWithin
        | F::StOverlaps
        | F::StCrosses
        | F::StIntersects
        | F::StContains
        | F::StRelate => {
            check_geometry_arguments(function, &lowered, args)?;
            let sql_name = format!("stela_{}", function.name().replace('.', "_"));
            let arguments: Vec<String> = lowered.iter().map(|v| v.sql.clone()).collect();
            let kind = if matches!(function, F::GeoDistance | F::GeoLength) {
                Kind::Number
            } else {
                Kind::Bool
            };
            let call = format!("{sql_name}({})", arguments.join(", "));
            // A geometry that does not parse gives NULL: no match rather than an error.
            Lowered::new(
                if kind == Kind::Bool { format!("COALESCE({call}, 0)") } else { call },
                kind,
            )
        }
        F::Before | F::After | F::Meets | F::During | F::Overlaps | F::Starts | F::Finishes => {
            interval_relation(cx, function, &lowered, expr)?
        }
    })
}

/// The first two arguments of a spatial function (one for `geo.length`) are geometries.
fn check_geometry_arguments(
    function: Function,
    lowered: &[Lowered],
    args: &[Expr],
) -> Result<(), StoreError> {
    let geometries = lowered.len().min(2);
    for (i, arg) in lowered.iter().take(geometries).enumerate() {
        if arg.kind != Kind::Geometry {
            return Err(StoreError::query(
                "$filter",
                format!(
                    "argument {} of {} must be a geometry: '{}'",
                    i + 1,
                    function.name(),
                    args[i]
                ),
            ));
        }
    }
    Ok(())
}

fn cx_error_time(expr: &Expr) -> StoreError {
    StoreError::query("$filter", format!("'{expr}' needs a time argument"))
}

/// The interval relations of FROST-Server (Allen's relations on start/end pairs).
fn interval_relation(
    cx: &Context<'_>,
    function: Function,
    args: &[Lowered],
    expr: &Expr,
) -> Result<Lowered, StoreError> {
    let bounds = |v: &Lowered| -> Option<(String, String)> {
        match v.kind {
            Kind::Interval => Some((v.sql.clone(), v.end.clone().unwrap_or_else(|| v.sql.clone()))),
            Kind::Time => Some((v.sql.clone(), v.sql.clone())),
            _ => None,
        }
    };
    let (Some((s1, e1)), Some((s2, e2))) =
        (args.first().and_then(bounds), args.get(1).and_then(bounds))
    else {
        return Err(cx.error(format!("'{expr}' needs two times or intervals")));
    };
    use Function as F;
    let sql = match function {
        F::Before => format!("({e1} < {s2})"),
        F::After => format!("({s1} > {e2})"),
        F::Meets => format!("({e1} = {s2} OR {e2} = {s1})"),
        F::During => format!("({s1} >= {s2} AND {e1} <= {e2})"),
        F::Overlaps => format!("({s1} < {e2} AND {e1} > {s2})"),
        F::Starts => format!("({s1} = {s2})"),
        F::Finishes => format!("({e1} = {e2})"),
        _ => return Err(cx.error(format!("'{}' is not an interval relation", function.name()))),
    };
    Ok(Lowered::new(sql, Kind::Bool))
}

/// The FROM item and join condition that follow `relation` from the row aliased `alias`.
fn join_relation(
    cx: &mut Context<'_>,
    relation: &Relation,
    alias: &str,
) -> (String, String, String) {
    let next = cx.alias();
    let target = relation.target.table();
    let (from, condition) = match relation.link {
        Link::Forward { column } => {
            (format!("{target} {next}"), format!("{next}.id = {alias}.{column}"))
        }
        Link::Reverse { column } => {
            (format!("{target} {next}"), format!("{next}.{column} = {alias}.id"))
        }
        Link::Join { table, this_column, target_column, .. } => {
            let join = cx.alias();
            (
                format!(
                    "{table} {join} JOIN {target} {next} ON {next}.id = {join}.{target_column}"
                ),
                format!("{join}.{this_column} = {alias}.id"),
            )
        }
    };
    (from, condition, next)
}

/// `Datastreams/any(d: d/name eq 'x')` and `all(…)`: EXISTS over the related entities.
#[allow(clippy::too_many_arguments)]
fn lambda(
    cx: &mut Context<'_>,
    ty: EntityType,
    alias: &str,
    collection: &[String],
    quantifier: Quantifier,
    body: Option<&LambdaPredicate>,
    expr: &Expr,
    depth: usize,
) -> Result<Lowered, StoreError> {
    let (mut current_ty, mut current_alias) = (ty, alias.to_owned());
    let mut segments = collection;
    if let Some(first) = collection.first()
        && let Some((_, var_ty, var_alias)) =
            cx.variables.iter().rev().find(|(name, _, _)| name == first).cloned()
    {
        (current_ty, current_alias) = (var_ty, var_alias);
        segments = &collection[1..];
    }
    if segments.is_empty() {
        return Err(
            cx.error(format!("'{expr}' needs a relation before {}()", quantifier.keyword()))
        );
    }
    let mut from = Vec::new();
    let mut conditions = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let relation = current_ty
            .relation(segment)
            .ok_or_else(|| cx.error(format!("{current_ty} has no relation '{segment}'")))?;
        let (item, condition, next) = join_relation(cx, relation, &current_alias);
        if i == 0 {
            from.push(item);
            conditions.push(condition);
        } else {
            from.push(format!("{item} ON {condition}"));
        }
        (current_ty, current_alias) = (relation.target, next);
    }
    let body_sql = match body {
        Some(body) => {
            cx.variables.push((body.variable.clone(), current_ty, current_alias.clone()));
            let root = cx.root;
            let sql = predicate(cx, root, &body.body, depth + 1);
            cx.variables.pop();
            Some(sql?)
        }
        None => None,
    };
    let from = from.join(" JOIN ");
    let conditions = conditions.join(" AND ");
    let sql = match (quantifier, body_sql) {
        (Quantifier::Any, None) => format!("EXISTS (SELECT 1 FROM {from} WHERE {conditions})"),
        (Quantifier::Any, Some(b)) => {
            format!("EXISTS (SELECT 1 FROM {from} WHERE {conditions} AND {b})")
        }
        (Quantifier::All, None) => true_sql(cx.dialect).to_owned(),
        (Quantifier::All, Some(b)) => {
            let false_sql = false_sql(cx.dialect);
            format!(
                "NOT EXISTS (SELECT 1 FROM {from} WHERE {conditions} AND NOT COALESCE({b}, {false_sql}))"
            )
        }
    };
    Ok(Lowered::new(sql, Kind::Bool))
}

/// The PostgreSQL forms of what SQLite writes differently.
///
/// Times are `timestamptz`, JSON is `jsonb`, a result is one `jsonb` beside its type code,
/// geometries are PostGIS columns. The aim is SQLite's answers on PostgreSQL, so the forms
/// imitate SQLite where the two differ:
///
/// - A JSON member or a result has a type only known per row. SQLite compares such values by
///   storage class first (NULL, then numbers, with JSON booleans as 1 and 0, then text, JSON
///   objects and arrays as their text) and within a class by value: [`pg::Dynamic`] is that
///   triple (class, value as a number, value as text), and a comparison picks by class with
///   a `CASE` (whose branches PostgreSQL evaluates lazily, so no cast meets a wrong type).
/// - Numbers are `double precision` (SQLite's REAL) when they come from JSON or a result;
///   `round` rounds half away from zero, `%` truncates its operands to integers, division by
///   zero gives NULL, as on SQLite.
/// - `$orderby` places NULLs as SQLite does (first ascending, last descending) and orders a
///   result or JSON member by class, number, then text.
///
/// What still differs: objects and arrays compared or ordered as text use PostgreSQL's
/// `jsonb` text (`{"a": 1}`, with spaces) where SQLite has the stored text (`{"a":1}`);
/// numbers written as text (`length(result)`, `concat`) use PostgreSQL's float format for
/// REALs with no fraction (`3` where SQLite writes `3.0`); a string in arithmetic or a
/// numeric function is NULL (SQLite reads its leading digits) or refused; `substring` with a
/// negative start counts from the start (SQLite: from the end); integer overflow in
/// arithmetic is an error (SQLite turns to REAL); `geo.distance` between shapes other than
/// points is PostGIS's exact geodesic distance (SQLite approximates, see `spatial.rs`).
mod pg {
    use super::*;

    /// A `timestamptz` as microseconds since the epoch (exact: `EXTRACT` gives `numeric`).
    pub(super) fn micros(time: &str) -> String {
        format!("CAST(EXTRACT(EPOCH FROM {time}) * 1000000 AS bigint)")
    }

    /// A member of a JSON document: `doc -> key -> index`, each step bound. An index step on
    /// an object, or a key step on an array, gives NULL, as SQLite's `$[0]` and `$."k"` do.
    pub(super) fn json_member(
        cx: &mut Context<'_>,
        alias: &str,
        column: &str,
        kind: PropertyKind,
        rest: &[String],
    ) -> String {
        let mut sql = if kind == PropertyKind::Result {
            format!("(CASE WHEN {alias}.result_type = 4 THEN {alias}.result END)")
        } else {
            column.to_owned()
        };
        for segment in rest {
            match segment.parse::<u32>() {
                Ok(index)
                    if kind == PropertyKind::Result
                        || segment.starts_with(|c: char| c.is_ascii_digit()) =>
                {
                    let index = i64::from(index).min(i64::from(i32::MAX));
                    let param = cx.param(Sql::Integer(index));
                    let _ = write!(sql, " -> CAST({param} AS integer)");
                }
                _ => {
                    let param = cx.param(Sql::Text(segment.clone()));
                    let _ = write!(sql, " -> CAST({param} AS text)");
                }
            }
        }
        format!("({sql})")
    }

    /// A value typed per row, in SQLite's storage classes: `rank` 1 for numbers (booleans as
    /// 1 and 0), 2 for text, NULL for null; `number` and `text` its value in its class.
    pub(super) struct Dynamic {
        rank: String,
        number: String,
        text: String,
    }

    fn json_dynamic(j: &str) -> Dynamic {
        Dynamic {
            rank: format!(
                "(CASE jsonb_typeof({j}) WHEN 'number' THEN 1 WHEN 'boolean' THEN 1 \
                 WHEN 'string' THEN 2 WHEN 'object' THEN 2 WHEN 'array' THEN 2 END)"
            ),
            number: format!(
                "(CASE jsonb_typeof({j}) WHEN 'number' THEN CAST({j} AS double precision) \
                 WHEN 'boolean' THEN CAST(CAST({j} AS boolean) AS integer) END)"
            ),
            text: format!(
                "((CASE jsonb_typeof({j}) WHEN 'string' THEN {j} #>> '{{}}' \
                 WHEN 'object' THEN CAST({j} AS text) WHEN 'array' THEN CAST({j} AS text) END) \
                 COLLATE \"C\")"
            ),
        }
    }

    fn result_dynamic(code: &str, r: &str) -> Dynamic {
        Dynamic {
            rank: format!(
                "(CASE {code} WHEN 1 THEN 1 WHEN 2 THEN 1 WHEN 3 THEN 2 WHEN 4 THEN 2 END)"
            ),
            number: format!(
                "(CASE {code} WHEN 2 THEN CAST({r} AS double precision) \
                 WHEN 1 THEN CAST(CAST({r} AS boolean) AS integer) END)"
            ),
            text: format!(
                "((CASE {code} WHEN 3 THEN {r} #>> '{{}}' WHEN 4 THEN CAST({r} AS text) END) \
                 COLLATE \"C\")"
            ),
        }
    }

    fn code_of(v: &Lowered) -> String {
        v.result_type.clone().unwrap_or_default()
    }

    fn dynamic(v: &Lowered) -> Option<Dynamic> {
        match v.kind {
            Kind::JsonValue => Some(json_dynamic(&v.sql)),
            Kind::Result => Some(result_dynamic(&code_of(v), &v.sql)),
            _ => None,
        }
    }

    /// A numeric result (NULL for other results), as in SQLite's `result_type = 2 AND …`.
    fn result_number(v: &Lowered) -> String {
        format!("(CASE WHEN {} = 2 THEN CAST({} AS double precision) END)", code_of(v), v.sql)
    }

    fn result_bool(v: &Lowered) -> String {
        format!("(CASE WHEN {} = 1 THEN CAST({} AS boolean) END)", code_of(v), v.sql)
    }

    /// A value of a statically known type: its storage class (1 number, 2 text) and its SQL
    /// in that class.
    fn fixed(v: &Lowered) -> Option<(u8, String)> {
        match v.kind {
            Kind::Number => Some((1, v.sql.clone())),
            Kind::Bool => Some((1, format!("CAST({} AS integer)", v.sql))),
            Kind::Time | Kind::Interval => Some((1, micros(&v.sql))),
            Kind::Text | Kind::Date | Kind::TimeOfDay => Some((2, v.sql.clone())),
            _ => None,
        }
    }

    /// Whether `a op b` holds for two storage classes.
    fn holds(op: BinaryOp, a: u8, b: u8) -> bool {
        match op {
            BinaryOp::Eq => a == b,
            BinaryOp::Ne => a != b,
            BinaryOp::Gt => a > b,
            BinaryOp::Ge => a >= b,
            BinaryOp::Lt => a < b,
            BinaryOp::Le => a <= b,
            _ => false,
        }
    }

    fn dynamic_with_fixed(
        cx: &Context<'_>,
        d: &Dynamic,
        op: BinaryOp,
        other: &Lowered,
    ) -> Result<String, StoreError> {
        let (class, sql) =
            fixed(other).ok_or_else(|| cx.error("these values cannot be compared"))?;
        let rank = &d.rank;
        let field = if class == 1 { &d.number } else { &d.text };
        let op = operator(op);
        Ok(format!(
            "(CASE WHEN {rank} <> {class} THEN {rank} {op} {class} ELSE {field} {op} {sql} END)"
        ))
    }

    /// Comparisons SQLite writes as `l op r`: by storage class, then by value.
    pub(super) fn comparison(
        cx: &Context<'_>,
        op: BinaryOp,
        left: &Lowered,
        right: &Lowered,
    ) -> Result<String, StoreError> {
        let sql_op = operator(op);
        match (dynamic(left), dynamic(right)) {
            (Some(a), Some(b)) => Ok(format!(
                "(CASE WHEN {ra} <> {rb} THEN {ra} {sql_op} {rb} WHEN {ra} = 1 THEN {na} {sql_op} {nb} \
                 ELSE {ta} {sql_op} {tb} END)",
                ra = a.rank,
                rb = b.rank,
                na = a.number,
                nb = b.number,
                ta = a.text,
                tb = b.text
            )),
            (Some(a), None) => dynamic_with_fixed(cx, &a, op, right),
            (None, Some(b)) => dynamic_with_fixed(cx, &b, flip(op), left),
            (None, None) => {
                let times = [Kind::Time, Kind::Interval];
                if left.kind == right.kind
                    || (times.contains(&left.kind) && times.contains(&right.kind))
                {
                    return Ok(format!("{} {sql_op} {}", left.sql, right.sql));
                }
                let (Some((lc, l)), Some((rc, r))) = (fixed(left), fixed(right)) else {
                    return Err(cx.error("these values cannot be compared"));
                };
                Ok(if lc == rc {
                    format!("{l} {sql_op} {r}")
                } else if holds(op, lc, rc) {
                    "TRUE".to_owned()
                } else {
                    "FALSE".to_owned()
                })
            }
        }
    }

    /// A result (the left side) compared with a string, number, JSON member, boolean or
    /// result.
    pub(super) fn result_comparison(
        cx: &Context<'_>,
        op: BinaryOp,
        left: &Lowered,
        right: &Lowered,
    ) -> Result<String, StoreError> {
        let (code, r) = (code_of(left), &left.sql);
        let sql_op = operator(op);
        match right.kind {
            Kind::Text => {
                // The standard casts a non-string result to a string for a string comparison.
                let text = format!(
                    "((CASE {code} WHEN 1 THEN (CASE WHEN CAST({r} AS boolean) THEN 'true' ELSE 'false' END) \
                     WHEN 4 THEN CAST({r} AS text) ELSE {r} #>> '{{}}' END) COLLATE \"C\")"
                );
                Ok(format!("({code} <> 0 AND {text} {sql_op} {})", right.sql))
            }
            Kind::Number => Ok(format!("({} {sql_op} {})", result_number(left), right.sql)),
            Kind::JsonValue => {
                let number = Lowered::new(result_number(left), Kind::Number);
                let json = json_dynamic(&right.sql);
                Ok(format!(
                    "({code} = 2 AND {})",
                    dynamic_with_fixed(cx, &json, flip(op), &number)?
                ))
            }
            Kind::Bool => Ok(format!("({} {sql_op} {})", result_bool(left), right.sql)),
            _ => comparison(cx, op, left, right),
        }
    }

    /// A value used as a condition, true as SQLite takes it (non-zero).
    pub(super) fn condition(v: &Lowered) -> String {
        match v.kind {
            Kind::Null => "CAST(NULL AS boolean)".to_owned(),
            Kind::Number => format!("({} <> 0)", v.sql),
            Kind::JsonValue => format!("({} <> 0)", json_dynamic(&v.sql).number),
            Kind::Result => result_bool(v),
            _ => v.sql.clone(),
        }
    }

    /// A value as a number, as SQLite's arithmetic takes it.
    pub(super) fn number(cx: &Context<'_>, v: &Lowered, expr: &Expr) -> Result<String, StoreError> {
        match v.kind {
            Kind::Number => Ok(v.sql.clone()),
            Kind::JsonValue => Ok(json_dynamic(&v.sql).number),
            Kind::Result => Ok(result_number(v)),
            Kind::Time | Kind::Interval => Ok(micros(&v.sql)),
            Kind::Bool => Ok(format!("CAST({} AS integer)", v.sql)),
            _ => Err(cx.error(format!("'{expr}' is not a number"))),
        }
    }

    /// A value as text, as SQLite's `CAST(… AS TEXT)` and string functions take it.
    pub(super) fn text(v: &Lowered) -> String {
        let sql = &v.sql;
        match v.kind {
            Kind::Text | Kind::Date | Kind::TimeOfDay => sql.clone(),
            Kind::Number => format!("CAST({sql} AS text)"),
            Kind::Bool => format!("(CASE {sql} WHEN TRUE THEN '1' WHEN FALSE THEN '0' END)"),
            Kind::Time | Kind::Interval => format!("CAST({} AS text)", micros(sql)),
            Kind::JsonValue => format!(
                "((CASE jsonb_typeof({sql}) WHEN 'boolean' THEN (CASE WHEN CAST({sql} AS boolean) THEN '1' ELSE '0' END) \
                 WHEN 'object' THEN CAST({sql} AS text) WHEN 'array' THEN CAST({sql} AS text) \
                 ELSE {sql} #>> '{{}}' END) COLLATE \"C\")"
            ),
            Kind::Result => format!(
                "((CASE {code} WHEN 1 THEN (CASE WHEN CAST({sql} AS boolean) THEN '1' ELSE '0' END) \
                 WHEN 4 THEN CAST({sql} AS text) ELSE {sql} #>> '{{}}' END) COLLATE \"C\")",
                code = code_of(v)
            ),
            Kind::Null => "CAST(NULL AS text)".to_owned(),
            Kind::Json => format!("CAST({sql} AS text)"),
            Kind::Geometry => format!("ST_AsGeoJSON({sql})"),
        }
    }

    /// The `ORDER BY` keys of a value: a result or JSON member by class, number, then text.
    pub(super) fn sort_keys(v: &Lowered) -> Vec<String> {
        match v.kind {
            Kind::JsonValue | Kind::Result => match dynamic(v) {
                Some(d) => vec![d.rank, d.number, d.text],
                None => vec![v.sql.clone()],
            },
            // A constant is not an ORDER BY key on PostgreSQL; an expression of it is.
            Kind::Bool | Kind::Null => vec![format!("CAST({} AS boolean)", v.sql)],
            Kind::Json | Kind::Geometry => vec![format!("{} COLLATE \"C\"", text(v))],
            _ => vec![v.sql.clone()],
        }
    }

    pub(super) fn arithmetic(
        cx: &Context<'_>,
        op: BinaryOp,
        left: &Lowered,
        right: &Lowered,
        expr: &Expr,
    ) -> Result<Lowered, StoreError> {
        if matches!(left.kind, Kind::Time | Kind::Interval)
            && right.kind == Kind::Number
            && matches!(op, BinaryOp::Add | BinaryOp::Sub)
        {
            // A duration is a number of microseconds.
            return Ok(Lowered::new(
                format!(
                    "({} {} ({}) * INTERVAL '1 microsecond')",
                    left.sql,
                    operator(op),
                    right.sql
                ),
                Kind::Time,
            ));
        }
        let (l, r) = (number(cx, left, expr)?, number(cx, right, expr)?);
        let sql = match op {
            BinaryOp::Div => format!("(CAST({l} AS double precision) / NULLIF({r}, 0))"),
            // SQLite's % truncates both operands to integers.
            BinaryOp::Mod => {
                format!("(CAST(trunc({l}) AS bigint) % NULLIF(CAST(trunc({r}) AS bigint), 0))")
            }
            _ => format!("({l} {} {r})", operator(op)),
        };
        Ok(Lowered::new(sql, Kind::Number))
    }

    pub(super) fn call(
        cx: &mut Context<'_>,
        function: Function,
        lowered: &[Lowered],
        args: &[Expr],
        expr: &Expr,
    ) -> Result<Lowered, StoreError> {
        let text = |i: usize| lowered.get(i).map_or_else(String::new, text);
        let number_of = |cx: &Context<'_>, i: usize| -> Result<String, StoreError> {
            match (lowered.get(i), args.get(i)) {
                (Some(v), Some(arg)) => number(cx, v, arg),
                _ => Err(cx.error(format!("'{expr}' lacks an argument"))),
            }
        };
        let time = |i: usize| -> Result<String, StoreError> {
            lowered
                .get(i)
                .filter(|v| matches!(v.kind, Kind::Time | Kind::Interval))
                .map(|v| v.sql.clone())
                .ok_or_else(|| cx_error_time(expr))
        };
        let utc = |field: &str| -> Result<Lowered, StoreError> {
            let t = time(0)?;
            Ok(Lowered::new(
                format!("CAST(EXTRACT({field} FROM {t} AT TIME ZONE 'UTC') AS bigint)"),
                Kind::Number,
            ))
        };
        use Function as F;
        Ok(match function {
            F::SubstringOf => {
                Lowered::new(format!("(strpos({}, {}) > 0)", text(1), text(0)), Kind::Bool)
            }
            F::Contains => {
                Lowered::new(format!("(strpos({}, {}) > 0)", text(0), text(1)), Kind::Bool)
            }
            F::StartsWith => Lowered::new(
                format!("(substr({0}, 1, length({1})) = {1})", text(0), text(1)),
                Kind::Bool,
            ),
            F::EndsWith => Lowered::new(
                format!("(length({1}) = 0 OR right({0}, length({1})) = {1})", text(0), text(1)),
                Kind::Bool,
            ),
            F::Length => Lowered::new(format!("length({})", text(0)), Kind::Number),
            F::IndexOf => {
                Lowered::new(format!("(strpos({}, {}) - 1)", text(0), text(1)), Kind::Number)
            }
            F::Substring if lowered.len() == 3 => Lowered::new(
                format!(
                    "substr({}, CAST(trunc({}) + 1 AS integer), CAST(GREATEST(trunc({}), 0) AS integer))",
                    text(0),
                    number_of(cx, 1)?,
                    number_of(cx, 2)?
                ),
                Kind::Text,
            ),
            F::Substring => Lowered::new(
                format!("substr({}, CAST(trunc({}) + 1 AS integer))", text(0), number_of(cx, 1)?),
                Kind::Text,
            ),
            F::ToLower => Lowered::new(format!("lower({})", text(0)), Kind::Text),
            F::ToUpper => Lowered::new(format!("upper({})", text(0)), Kind::Text),
            F::Trim => Lowered::new(format!("trim({})", text(0)), Kind::Text),
            F::Concat => Lowered::new(format!("({} || {})", text(0), text(1)), Kind::Text),
            F::Year => utc("YEAR")?,
            F::Month => utc("MONTH")?,
            F::Day => utc("DAY")?,
            F::Hour => utc("HOUR")?,
            F::Minute => utc("MINUTE")?,
            F::Second => Lowered::new(
                format!(
                    "CAST(floor(EXTRACT(SECOND FROM {} AT TIME ZONE 'UTC')) AS bigint)",
                    time(0)?
                ),
                Kind::Number,
            ),
            F::FractionalSeconds => Lowered::new(
                format!("(CAST({} % 1000000 AS double precision) / 1000000)", micros(&time(0)?)),
                Kind::Number,
            ),
            F::Date => Lowered::new(
                format!("to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD')", time(0)?),
                Kind::Date,
            ),
            F::Time => Lowered::new(
                format!("to_char({} AT TIME ZONE 'UTC', 'HH24:MI:SS')", time(0)?),
                Kind::TimeOfDay,
            ),
            F::TotalOffsetMinutes => {
                time(0)?;
                // Stela stores every instant in UTC.
                Lowered::new("CAST(0 AS bigint)".into(), Kind::Number)
            }
            F::Now => Lowered::new("now()".into(), Kind::Time),
            F::MinDateTime => Lowered::new(
                cx.typed_param(Sql::Integer(-62_135_596_800_000_000), "timestamptz"),
                Kind::Time,
            ),
            F::MaxDateTime => Lowered::new(
                cx.typed_param(Sql::Integer(253_402_300_799_999_999), "timestamptz"),
                Kind::Time,
            ),
            // round(numeric) rounds half away from zero as SQLite does (round(double) to even).
            F::Round => Lowered::new(
                format!("CAST(round(CAST({} AS numeric)) AS double precision)", number_of(cx, 0)?),
                Kind::Number,
            ),
            F::Floor => Lowered::new(format!("floor({})", number_of(cx, 0)?), Kind::Number),
            F::Ceiling => Lowered::new(format!("ceil({})", number_of(cx, 0)?), Kind::Number),
            F::GeoDistance => {
                check_geometry_arguments(function, lowered, args)?;
                Lowered::new(
                    format!(
                        "ST_Distance(CAST({} AS geography), CAST({} AS geography), false)",
                        lowered[0].sql, lowered[1].sql
                    ),
                    Kind::Number,
                )
            }
            F::GeoLength => {
                check_geometry_arguments(function, lowered, args)?;
                Lowered::new(
                    format!("ST_Length(CAST({} AS geography), false)", lowered[0].sql),
                    Kind::Number,
                )
            }
            F::GeoIntersects
            | F::StEquals
            | F::StDisjoint
            | F::StTouches
            | F::StWithin
            | F::StOverlaps
            | F::StCrosses
            | F::StIntersects
            | F::StContains
            | F::StRelate => {
                check_geometry_arguments(function, lowered, args)?;
                let name = match function {
                    F::StEquals => "ST_Equals",
                    F::StDisjoint => "ST_Disjoint",
                    F::StTouches => "ST_Touches",
                    F::StWithin => "ST_Within",
                    F::StOverlaps => "ST_Overlaps",
                    F::StCrosses => "ST_Crosses",
                    F::StContains => "ST_Contains",
                    F::StRelate => "ST_Relate",
                    _ => "ST_Intersects",
                };
                let arguments: Vec<&str> = lowered.iter().map(|v| v.sql.as_str()).collect();
                // A geometry that does not parse is NULL: no match rather than an error.
                Lowered::new(
                    format!("COALESCE({name}({}), FALSE)", arguments.join(", ")),
                    Kind::Bool,
                )
            }
            F::Before | F::After | F::Meets | F::During | F::Overlaps | F::Starts | F::Finishes => {
                interval_relation(cx, function, lowered, expr)?
            }
        })
    }
}
