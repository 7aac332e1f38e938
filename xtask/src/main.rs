//! Workspace chores: `cargo xtask codegen`.

fn main() {}
