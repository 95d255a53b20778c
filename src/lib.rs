//! keyward: the one tool that owns PazPaz's secrets and certificates.
//!
//! The library holds everything; `main.rs` only calls [`run`] and turns the result into
//! an exit code. clap types stay in [`cli`] and are converted into the library's own
//! types before anything happens. Each module owns one concept of the product.
#![forbid(unsafe_code)]

pub mod acme;
pub mod audit;
pub mod backup;
pub mod ca;
pub mod cli;
pub mod config;
pub mod context;
pub mod error;
pub mod exit;
pub mod github;
pub mod hooks;
pub mod init;
pub mod output;
pub mod report;
pub mod run;
pub mod secret;
pub mod secrets;
pub mod status;
pub mod store;
pub mod util;

pub use context::Context;
pub use error::Error;
pub use exit::Exit;

/// Parses the command line, runs the command, prints its output.
///
/// Returns the exit status of a command that ran (which may still be `Failed` or
/// `Attention`), or the error that stopped it; `main` prints the error.
pub fn run() -> Result<Exit, Error> {
    cli::main(std::env::args_os())
}
