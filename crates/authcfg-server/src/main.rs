//! The `authcfg` binary: parses the command line and runs the command.
//!
//! The binary allocates with jemalloc rather than the C library's malloc.
//! A server with many data sources keeps many small long-lived allocations
//! among short-lived ones. jemalloc returns the freed pages between them to
//! the operating system, where glibc's arenas keep them. On Linux, jemalloc
//! also replaces the C library's `malloc`, so SQLite's page caches and
//! statements share its one arena rather than a glibc arena per thread that
//! ever ran a query.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Background threads return freed pages after jemalloc's decay time,
    // also while the server is idle; without them, pages are returned only
    // during later allocations. Failing to start them costs memory, not
    // correctness, so the error is ignored.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    authcfg_server::cli::main()
}

#[cfg(test)]
mod tests {
    /// `.cargo/config.toml` compiles the allocator options in.
    #[test]
    fn allocator_options_are_compiled_in() {
        assert_eq!(tikv_jemalloc_ctl::opt::narenas::read().ok(), Some(1));
    }
}
