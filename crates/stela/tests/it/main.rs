//! Black-box tests of the `stela` binary: each test starts the built executable on
//! `127.0.0.1:0` with its own temporary data directory and talks to it over HTTP or signals.

mod durability;
mod ledger;
mod lifecycle;
mod migrate;
mod mqtt;
mod support;
