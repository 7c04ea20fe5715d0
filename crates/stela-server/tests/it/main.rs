//! Black-box tests of the SensorThings HTTP API: a real server on a free port, a real SQLite
//! database in a temporary directory, a real HTTP client.

mod batch;
mod core;
mod create;
mod data_array;
mod errors;
mod filter;
mod ledger;
mod multi_datastream;
mod query;
mod support;
mod update_delete;
