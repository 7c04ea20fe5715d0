//! How each property kind maps to SQL columns, both ways.
//!
//! | kind              | columns                          |
//! |-------------------|----------------------------------|
//! | Text              | `col` TEXT                       |
//! | Json, JsonObject, JsonArray, Geometry | `col` TEXT (JSON) |
//! | Instant           | `col` INTEGER (µs since epoch)   |
//! | Interval          | `col_start`, `col_end` INTEGER   |
//! | InstantOrInterval | `col_start`, `col_end` (NULL end for an instant) |
//! | Result            | `result_type` INTEGER, `result` (typed value or JSON text) |

use rusqlite::types::Value as Sql;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::OnceLock;

use stela_model::{EntityType, Property, PropertyKind, TimeValue, Value};

use crate::StoreError;
use crate::db::{Dialect, Row};

/// Result type codes of the `result_type` column.
pub(crate) const RESULT_NULL: i64 = 0;
pub(crate) const RESULT_BOOL: i64 = 1;
pub(crate) const RESULT_NUMBER: i64 = 2;
pub(crate) const RESULT_STRING: i64 = 3;
pub(crate) const RESULT_JSON: i64 = 4;

/// The column names of a property, in the order of [`to_sql`] and [`from_row`]; worked out
/// once for every property of the model (every row read or written asks).
pub(crate) fn column_names(property: &Property) -> &'static [String] {
    type Key = (&'static str, u8);
    static NAMES: OnceLock<HashMap<Key, Vec<String>>> = OnceLock::new();
    fn key(property: &Property) -> Key {
        let shape = match property.kind {
            PropertyKind::Interval | PropertyKind::InstantOrInterval => 1,
            PropertyKind::Result => 2,
            _ => 0,
        };
        (property.column, shape)
    }
    fn names(property: &Property) -> Vec<String> {
        let col = property.column;
        match property.kind {
            PropertyKind::Interval | PropertyKind::InstantOrInterval => {
                vec![format!("{col}_start"), format!("{col}_end")]
            }
            PropertyKind::Result => vec![format!("{col}_type"), col.to_owned()],
            _ => vec![col.to_owned()],
        }
    }
    let all = NAMES.get_or_init(|| {
        EntityType::ALL
            .iter()
            .flat_map(|ty| ty.properties())
            .map(|property| (key(property), names(property)))
            .collect()
    });
    all.get(&key(property)).map_or(&[], Vec::as_slice)
}

/// [`column_names`] of every property of `ty`, by property index (no lookup per property).
pub(crate) fn columns_of(ty: EntityType) -> &'static [&'static [String]] {
    static BY_TYPE: OnceLock<Vec<Vec<&'static [String]>>> = OnceLock::new();
    let all = BY_TYPE.get_or_init(|| {
        EntityType::ALL
            .iter()
            .map(|ty| ty.properties().iter().map(column_names).collect())
            .collect()
    });
    let index = EntityType::ALL.iter().position(|t| *t == ty).unwrap_or(0);
    &all[index]
}

/// The SQL values of a property value, one per column.
///
/// A result on PostgreSQL is one `jsonb` column (its type code beside it, as on SQLite), so
/// its value is bound as JSON text whatever its type.
pub(crate) fn to_sql(dialect: Dialect, property: &Property, value: &Value) -> Vec<Sql> {
    match (property.kind, value) {
        (PropertyKind::Result, Value::Json(json)) if dialect == Dialect::Postgres => {
            let [code, _] = result_to_sql(json);
            let text = if json.is_null() { Sql::Null } else { Sql::Text(json.to_string()) };
            vec![code, text]
        }
        (PropertyKind::Result, Value::Json(json)) => result_to_sql(json).to_vec(),
        (PropertyKind::Result, _) => vec![Sql::Integer(RESULT_NULL), Sql::Null],
        (PropertyKind::Interval | PropertyKind::InstantOrInterval, Value::Time(t)) => match t {
            TimeValue::Instant(t) => vec![Sql::Integer(*t), Sql::Null],
            TimeValue::Interval(s, e) => vec![Sql::Integer(*s), Sql::Integer(*e)],
        },
        (PropertyKind::Interval | PropertyKind::InstantOrInterval, _) => vec![Sql::Null, Sql::Null],
        (_, Value::Time(t)) => vec![Sql::Integer(t.start())],
        (_, Value::Text(s)) => vec![Sql::Text(s.clone())],
        (_, Value::Json(json)) => vec![Sql::Text(json.to_string())],
        (_, Value::Null) => vec![Sql::Null],
    }
}

fn result_to_sql(json: &Json) -> [Sql; 2] {
    match json {
        Json::Null => [Sql::Integer(RESULT_NULL), Sql::Null],
        Json::Bool(b) => [Sql::Integer(RESULT_BOOL), Sql::Integer(i64::from(*b))],
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => [Sql::Integer(RESULT_NUMBER), Sql::Integer(i)],
            (None, Some(f)) if n.is_f64() => [Sql::Integer(RESULT_NUMBER), Sql::Real(f)],
            // u64 beyond i64: keep the exact digits as JSON.
            _ => [Sql::Integer(RESULT_JSON), Sql::Text(n.to_string())],
        },
        Json::String(s) => [Sql::Integer(RESULT_STRING), Sql::Text(s.clone())],
        other => [Sql::Integer(RESULT_JSON), Sql::Text(other.to_string())],
    }
}

/// Reads a property value from `row` starting at column `index`.
pub(crate) fn from_row(
    property: &Property,
    row: &Row<'_>,
    index: usize,
) -> Result<Value, StoreError> {
    match property.kind {
        PropertyKind::Text => {
            Ok(row.get::<Option<String>>(index)?.map_or(Value::Null, Value::Text))
        }
        PropertyKind::Json
        | PropertyKind::JsonObject
        | PropertyKind::JsonArray
        | PropertyKind::Geometry => match row.get::<Option<String>>(index)? {
            Some(text) => Ok(Value::Json(parse_stored_json(&text)?)),
            None => Ok(Value::Null),
        },
        PropertyKind::Instant => Ok(row
            .get::<Option<i64>>(index)?
            .map_or(Value::Null, |t| Value::Time(TimeValue::Instant(t)))),
        PropertyKind::Interval | PropertyKind::InstantOrInterval => {
            let start: Option<i64> = row.get(index)?;
            let end: Option<i64> = row.get(index + 1)?;
            Ok(match (start, end) {
                (Some(s), Some(e)) => Value::Time(TimeValue::Interval(s, e)),
                (Some(s), None) => Value::Time(TimeValue::Instant(s)),
                _ => Value::Null,
            })
        }
        PropertyKind::Result => {
            let kind: i64 = row.get(index)?;
            let raw: Sql = row.get(index + 1)?;
            match (row.dialect(), raw) {
                (Dialect::Postgres, Sql::Text(json)) => parse_stored_json(&json).map(Value::Json),
                (Dialect::Postgres, _) => Ok(Value::Json(Json::Null)),
                (Dialect::Sqlite, raw) => result_from_sql(kind, raw).map(Value::Json),
            }
        }
    }
}

fn result_from_sql(kind: i64, raw: Sql) -> Result<Json, StoreError> {
    Ok(match (kind, raw) {
        (RESULT_BOOL, Sql::Integer(i)) => Json::Bool(i != 0),
        (RESULT_NUMBER, Sql::Integer(i)) => Json::from(i),
        (RESULT_NUMBER, Sql::Real(f)) => {
            serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
        }
        (RESULT_STRING, Sql::Text(s)) => Json::String(s),
        (RESULT_JSON, Sql::Text(s)) => parse_stored_json(&s)?,
        _ => Json::Null,
    })
}

fn parse_stored_json(text: &str) -> Result<Json, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("stored JSON does not parse: {e}")))
}
