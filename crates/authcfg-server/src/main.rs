//! The `authcfg` binary.

fn main() {}
