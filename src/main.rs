//! The `maturity-operator` binary: the command line is in [`cli`].

mod cli;

use std::process::ExitCode;

/// jemalloc rather than glibc's malloc: steady memory stays near what is live (see
/// `docs/bench.md`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    maturity_operator::prom::init_tls();
    cli::main(cli::parse()).await
}
