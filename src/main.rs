//! The `maturity-operator` binary: the command line is in [`cli`].

mod cli;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    maturity_operator::prom::init_tls();
    cli::main(cli::Cli::parse()).await
}
