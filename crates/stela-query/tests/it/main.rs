//! The integration tests of `stela-query`, one binary with a module per concern: golden
//! files, round trips, no-panic properties, limits and the query-option API.

mod golden;
mod limits;
mod no_panic;
mod options;
mod round_trip;
