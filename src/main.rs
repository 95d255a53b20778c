//! The `keyward` binary: a thin shell over the library.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match keyward::run() {
        Ok(exit) => exit.into(),
        Err(err) => {
            keyward::output::print_error(&err);
            err.exit().into()
        }
    }
}
