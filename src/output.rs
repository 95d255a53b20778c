//! What a command prints: one document on stdout (human text or JSON), logs and
//! progress on stderr.
//!
//! Commands build a value that is both [`serde::Serialize`] (for `--format json`) and
//! [`Human`] (for the terminal) and hand it to [`emit`]. Nothing in here may be given a
//! secret value: the types that hold secrets do not implement either trait.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicI8, AtomicU8, Ordering};

use crate::{Error, Exit};

/// The output formats of the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Prometheus,
    Github,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Human => "human",
            Format::Json => "json",
            Format::Prometheus => "prometheus",
            Format::Github => "github",
        })
    }
}

static VERBOSITY: AtomicI8 = AtomicI8::new(0);
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide format and verbosity, once, from the global options.
pub fn init(format: Format, verbosity: i8) {
    VERBOSITY.store(verbosity, Ordering::Relaxed);
    FORMAT.store(format as u8, Ordering::Relaxed);
}

fn format() -> Format {
    match FORMAT.load(Ordering::Relaxed) {
        1 => Format::Json,
        2 => Format::Prometheus,
        3 => Format::Github,
        _ => Format::Human,
    }
}

/// A command result that can print itself for a person.
pub trait Human {
    fn human(&self, out: &mut String);
    /// The exit status this result stands for.
    fn exit(&self) -> Exit {
        Exit::Ok
    }
}

/// Prints `value` on stdout in `format` and returns its exit status.
pub fn emit<T: serde::Serialize + Human>(format: Format, value: &T) -> Result<Exit, Error> {
    let text = match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(value)
                .map_err(|e| Error::Output(format!("cannot encode JSON output: {e}")))?;
            s.push('\n');
            s
        }
        _ => {
            let mut s = String::new();
            value.human(&mut s);
            s
        }
    };
    write_stdout(text.as_bytes())?;
    Ok(value.exit())
}

/// Writes to stdout; a closed pipe (`keyward … | head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::Output(format!("cannot write to stdout: {e}"))),
    }
}

/// Prints an error for the operator: `error: …` on stderr, and with `--format json`
/// also `{"error": …, "exit": N}` on stdout so that a machine reader sees one document.
pub fn print_error(err: &Error) {
    eprintln!("error: {err}");
    if format() == Format::Json {
        let doc = serde_json::json!({ "error": err.to_string(), "exit": err.exit().code() });
        println!("{doc}");
    }
}

/// Log levels on stderr, filtered by `-v`/`-q`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = -1,
    Warn = 0,
    Info = 1,
    Debug = 2,
}

pub fn enabled(level: Level) -> bool {
    (level as i8) <= VERBOSITY.load(Ordering::Relaxed)
}

/// Writes one log line to stderr. Never pass a secret value: use names.
pub fn log(level: Level, msg: fmt::Arguments<'_>) {
    if enabled(level) {
        let tag = match level {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        };
        eprintln!("{tag}: {msg}");
    }
}

#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::output::log($crate::output::Level::Warn, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::output::log($crate::output::Level::Info, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::output::log($crate::output::Level::Debug, format_args!($($t)*)) };
}

/// A simple aligned text table for human output.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self, out: &mut String) {
        let cols = self.header.len();
        let mut width = vec![0usize; cols];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (i, cell) in row.iter().enumerate().take(cols) {
                width[i] = width[i].max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate().take(cols) {
                if i + 1 == cols {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = width[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}
