//! Fresh PostgreSQL databases for test suites: the storage and HTTP suites run once per
//! backend, and on PostgreSQL each test gets a database of its own, dropped afterwards.
//!
//! The server to use is given by `STELA_TEST_PG_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`, a role that may create databases).

use std::sync::atomic::{AtomicU64, Ordering};

use postgres::NoTls;

/// The environment variable naming the PostgreSQL server of the test suites.
pub const PG_URL_VAR: &str = "STELA_TEST_PG_URL";

/// A database created for one test; dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// The PostgreSQL server of the test suites, when one is configured.
    pub fn server() -> Option<String> {
        std::env::var(PG_URL_VAR).ok().filter(|url| !url.is_empty())
    }

    /// Creates an empty database on the server `admin_url` names.
    pub fn create(admin_url: &str) -> Result<TestDatabase, String> {
        crate::db::off_async_runtime(|| TestDatabase::create_here(admin_url))
            .unwrap_or_else(|| Err("creating the test database panicked".to_owned()))
    }

    fn create_here(admin_url: &str) -> Result<TestDatabase, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "stela_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut client = postgres::Client::connect(admin_url, NoTls)
            .map_err(|e| format!("cannot connect to {admin_url}: {e}"))?;
        // The name is ours (digits and underscores), not input: safe as an identifier.
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(|e| format!("cannot create database {name}: {e}"))?;
        let url = url_with_database(admin_url, &name);
        Ok(TestDatabase { admin: admin_url.to_owned(), name, url })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `admin_url` with its database replaced by `name`.
fn url_with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (&self.admin, &self.name);
        crate::db::off_async_runtime(|| {
            if let Ok(mut client) = postgres::Client::connect(admin, NoTls) {
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let _ = client.batch_execute(&sql);
            }
        });
    }
}

/// A Thing at a Location (at `coordinates`) with one Datastream and its Sensor and
/// ObservedProperty: the smallest tree that Observations, with their generated
/// FeatureOfInterest, can be created under. Shared by the test suites and the benchmark.
pub fn thing_with_datastream(coordinates: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"name": "t", "description": "d",
        "Locations": [{"name": "l", "description": "d", "encodingType": "application/geo+json",
            "location": {"type": "Point", "coordinates": coordinates}}],
        "Datastreams": [{"name": "ds", "description": "d", "observationType": "x", "unitOfMeasurement": {},
            "Sensor": {"name": "s", "description": "d", "encodingType": "x", "metadata": "x"},
            "ObservedProperty": {"name": "op", "definition": "x", "description": "d"}}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(url_with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(url_with_database("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            url_with_database("postgresql://u@h/db?sslmode=disable", "x"),
            "postgresql://u@h/x?sslmode=disable"
        );
    }
}
