//! `cargo xtask codegen`: generated documentation of the wire types.

pub(crate) fn run(_args: &[String]) -> anyhow::Result<()> {
    Ok(())
}
