//! Black-box tests of the SensorThings HTTP API: a real server on a free port, a real SQLite
//! database in a temporary directory (or, with `STELA_TEST_STORE=postgres`, a fresh PostgreSQL
//! database on the server `STELA_TEST_PG_URL` names), a real HTTP client.

mod batch;
mod core;
mod create;
mod data_array;
mod errors;
mod filter;
mod ledger;
mod multi_datastream;
mod outage;
mod query;
mod support;
mod update_delete;
