//! Spatial functions of the `$filter` language as SQLite scalar functions, on the `geo` crate.
//!
//! SQLite has no geometry type; Stela stores geometries as GeoJSON text and takes literals as
//! WKT (`geography'POINT(8 50)'`). Each function accepts either form in each argument.
//!
//! Units: `geo.distance` and `geo.length` answer in metres on the WGS 84 sphere (haversine),
//! the unit the standard's examples expect and the one the PostgreSQL backend gets from
//! PostGIS `geography`. The DE-9IM predicates (`st_*`, `geo.intersects`) are planar, on
//! longitude/latitude, as in PostGIS `geometry`.

use geo::{Closest, ClosestPoint, Distance, Geometry, Haversine, Length, Point, Relate};
use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::ValueRef;

/// Parses GeoJSON (a geometry, a feature or a collection of them) or WKT text.
pub(crate) fn parse_geometry(text: &str) -> Option<Geometry<f64>> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let geojson: geojson::GeoJson = trimmed.parse().ok()?;
        let collection = geo::GeometryCollection::<f64>::try_from(&geojson).ok()?;
        let mut items = collection.0;
        if items.len() == 1 {
            items.pop()
        } else {
            Some(Geometry::GeometryCollection(geo::GeometryCollection(items)))
        }
    } else {
        let parsed: wkt::Wkt<f64> = trimmed.parse().ok()?;
        Geometry::try_from(parsed).ok()
    }
}

fn geometry_argument(ctx: &Context<'_>, index: usize) -> Option<Geometry<f64>> {
    match ctx.get_raw(index) {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).ok().and_then(parse_geometry),
        _ => None,
    }
}

/// A DE-9IM test on the intersection matrix of two geometries.
type Predicate = fn(&geo::relate::IntersectionMatrix) -> bool;

/// Registers `stela_st_*`, `stela_geo_distance` and `stela_geo_length` on a connection.
pub(crate) fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let predicates: [(&str, Predicate); 9] = [
        ("stela_st_equals", |m| m.is_equal_topo()),
        ("stela_st_disjoint", |m| m.is_disjoint()),
        ("stela_st_touches", |m| m.is_touches()),
        ("stela_st_within", |m| m.is_within()),
        ("stela_st_overlaps", |m| m.is_overlaps()),
        ("stela_st_crosses", |m| m.is_crosses()),
        ("stela_st_intersects", |m| m.is_intersects()),
        ("stela_st_contains", |m| m.is_contains()),
        ("stela_geo_intersects", |m| m.is_intersects()),
    ];
    for (name, test) in predicates {
        conn.create_scalar_function(name, 2, flags, move |ctx| {
            let (Some(a), Some(b)) = (geometry_argument(ctx, 0), geometry_argument(ctx, 1)) else {
                return Ok(None);
            };
            Ok(Some(test(&a.relate(&b))))
        })?;
    }
    conn.create_scalar_function("stela_st_relate", 3, flags, |ctx| {
        let (Some(a), Some(b)) = (geometry_argument(ctx, 0), geometry_argument(ctx, 1)) else {
            return Ok(None);
        };
        let pattern: String = ctx.get(2)?;
        Ok(a.relate(&b).matches(&pattern).ok())
    })?;
    conn.create_scalar_function("stela_geo_distance", 2, flags, |ctx| {
        let (Some(a), Some(b)) = (geometry_argument(ctx, 0), geometry_argument(ctx, 1)) else {
            return Ok(None);
        };
        Ok(distance_metres(&a, &b))
    })?;
    conn.create_scalar_function("stela_geo_length", 1, flags, |ctx| {
        let Some(a) = geometry_argument(ctx, 0) else { return Ok(None) };
        Ok(Some(length_metres(&a)))
    })?;
    Ok(())
}

/// Haversine distance between the closest points of two geometries, 0 when they intersect.
fn distance_metres(a: &Geometry<f64>, b: &Geometry<f64>) -> Option<f64> {
    if let (Geometry::Point(p), Geometry::Point(q)) = (a, b) {
        return Some(Haversine.distance(*p, *q));
    }
    if a.relate(b).is_intersects() {
        return Some(0.0);
    }
    // The point of `b` closest to a representative point of `a`, then back: good enough for
    // the point-to-shape case that dominates SensorThings queries.
    let anchor = representative_point(a)?;
    let on_b = closest(b, anchor)?;
    let on_a = closest(a, on_b)?;
    Some(Haversine.distance(on_a, on_b))
}

fn closest(geometry: &Geometry<f64>, point: Point<f64>) -> Option<Point<f64>> {
    match geometry.closest_point(&point) {
        Closest::Intersection(p) | Closest::SinglePoint(p) => Some(p),
        Closest::Indeterminate => None,
    }
}

fn representative_point(geometry: &Geometry<f64>) -> Option<Point<f64>> {
    use geo::CoordsIter;
    geometry.coords_iter().next().map(Point::from)
}

fn length_metres(geometry: &Geometry<f64>) -> f64 {
    match geometry {
        Geometry::Line(line) => Haversine.length(line),
        Geometry::LineString(line) => Haversine.length(line),
        Geometry::MultiLineString(lines) => Haversine.length(lines),
        Geometry::GeometryCollection(items) => items.iter().map(length_metres).sum(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_geojson_features_and_wkt() {
        assert!(matches!(
            parse_geometry(r#"{"type":"Point","coordinates":[1,2]}"#),
            Some(Geometry::Point(_))
        ));
        assert!(matches!(
            parse_geometry(
                r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}"#
            ),
            Some(Geometry::Point(_))
        ));
        assert!(matches!(
            parse_geometry("POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))"),
            Some(Geometry::Polygon(_))
        ));
        assert!(parse_geometry("POINT(").is_none());
        assert!(parse_geometry("{").is_none());
    }

    #[test]
    fn distance_is_in_metres() {
        let a = parse_geometry("POINT(0 0)").unwrap();
        let b = parse_geometry("POINT(0 1)").unwrap();
        let d = distance_metres(&a, &b).unwrap();
        assert!((d - 111_195.0).abs() < 100.0, "{d}");
        let square = parse_geometry("POLYGON((0 0, 1 0, 1 1, 0 1, 0 0))").unwrap();
        assert_eq!(distance_metres(&a, &square), Some(0.0));
    }
}
