//! The one integration-test binary of `stela-log`: published vectors, property tests and
//! no-panic tests, one module per feature.

mod checkpoint;
mod jcs;
mod no_panic;
mod note;
mod proof_properties;
mod receipt;
mod rfc6962;
mod support;
mod tiles;
