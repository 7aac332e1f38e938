//! The `authcfg` binary: parses the command line and runs the command.

fn main() -> std::process::ExitCode {
    authcfg_server::cli::main()
}
