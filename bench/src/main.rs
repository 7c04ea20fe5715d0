//! Placeholder until the harness lands.
fn main() {}
