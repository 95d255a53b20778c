//! ASCII armor (C2SP age armor): strict streaming decoder and encoder.
//!
//! Accepted: optional whitespace around the armor, `-----BEGIN AGE ENCRYPTED FILE-----`,
//! base64 lines of exactly 64 columns with a final line of 1–64 columns carrying the
//! canonical padding, LF or CRLF line ends, `-----END AGE ENCRYPTED FILE-----`. Anything
//! else (headers, checksums, whitespace in lines, short middle lines, garbage around
//! the armor) is refused. This module only transcodes; it never sees keys.

use std::io::{self, BufRead, Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub const BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
pub const END: &str = "-----END AGE ENCRYPTED FILE-----";
const COLUMNS: usize = 64;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// An armor error, carried inside `io::Error` through the `Read` interface.
#[derive(Debug, thiserror::Error)]
#[error("invalid ASCII armor: {0}")]
pub struct ArmorError(pub String);

fn err(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, ArmorError(msg.to_string()))
}

/// Whether an `io::Error` is an armor error (and its message).
pub fn armor_error(e: &io::Error) -> Option<String> {
    e.get_ref().and_then(|i| i.downcast_ref::<ArmorError>()).map(|a| a.0.clone())
}

/// Whether the input is armored rather than a binary file. A binary header starts with
/// its version line (`age-encryption.org/…` or `keyward.pazpaz/…`); anything else that
/// is not empty is read as armor, so that garbage gets an armor error. Consumes the
/// whitespace allowed before the armor.
pub fn detect<R: BufRead>(r: &mut R) -> io::Result<bool> {
    let buf = r.fill_buf()?;
    match buf.first() {
        None | Some(b'a') | Some(b'k') => return Ok(false),
        Some(_) => {}
    }
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(true);
        }
        let ws = buf.iter().take_while(|&&b| is_ws(b)).count();
        let done = ws < buf.len();
        r.consume(ws);
        if done {
            return Ok(true);
        }
    }
}

/// Decodes armor from `inner` as a byte stream.
pub struct ArmorReader<R> {
    inner: R,
    started: bool,
    done: bool,
    prev: Option<Vec<u8>>,
    out: Vec<u8>,
    pos: usize,
}

impl<R: BufRead> ArmorReader<R> {
    pub fn new(inner: R) -> Self {
        ArmorReader { inner, started: false, done: false, prev: None, out: Vec::new(), pos: 0 }
    }

    /// One line without its LF or CRLF; `None` at EOF. `had_eol` tells if it ended so.
    fn line(&mut self) -> io::Result<Option<(Vec<u8>, bool)>> {
        let mut l = Vec::new();
        let n = (&mut self.inner).take(COLUMNS as u64 + 3).read_until(b'\n', &mut l)?;
        if n == 0 {
            return Ok(None);
        }
        let eol = l.last() == Some(&b'\n');
        if !eol && l.len() > COLUMNS + 2 {
            return Err(err("a line is longer than 64 columns"));
        }
        if eol {
            l.pop();
            if l.last() == Some(&b'\r') {
                l.pop();
            }
        }
        Ok(Some((l, eol)))
    }

    fn step(&mut self) -> io::Result<()> {
        if !self.started {
            match self.line()? {
                Some((l, true)) if l == BEGIN.as_bytes() => self.started = true,
                _ => return Err(err("the first line is not '-----BEGIN AGE ENCRYPTED FILE-----'")),
            }
        }
        let Some((l, eol)) = self.line()? else {
            return Err(err("the input ends before '-----END AGE ENCRYPTED FILE-----'"));
        };
        if l == END.as_bytes() {
            if let Some(last) = self.prev.take() {
                if last.is_empty() || last.len() % 4 != 0 {
                    return Err(err("the last line is empty or not padded"));
                }
                self.out = STANDARD
                    .decode(&last)
                    .map_err(|_| err("the last line is not canonical padded base64"))?;
                self.pos = 0;
            }
            self.done = true;
            // Only whitespace may follow.
            let mut rest = [0u8; 4096];
            loop {
                let n = self.inner.read(&mut rest)?;
                if n == 0 {
                    break;
                }
                if !rest[..n].iter().all(|&b| is_ws(b)) {
                    return Err(err("data after '-----END AGE ENCRYPTED FILE-----'"));
                }
            }
            return Ok(());
        }
        if !eol {
            return Err(err("the input ends before '-----END AGE ENCRYPTED FILE-----'"));
        }
        if l.len() > COLUMNS {
            return Err(err("a line is longer than 64 columns"));
        }
        if let Some(p) = self.prev.replace(l) {
            if p.len() != COLUMNS {
                return Err(err("a line before the last one is shorter than 64 columns"));
            }
            if p.contains(&b'=') {
                return Err(err("padding before the last line"));
            }
            self.out = STANDARD.decode(&p).map_err(|_| err("a line is not canonical base64"))?;
            self.pos = 0;
        }
        Ok(())
    }
}

impl<R: BufRead> Read for ArmorReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.out.len() {
            if self.done {
                return Ok(0);
            }
            self.out.clear();
            self.pos = 0;
            self.step()?;
        }
        let n = buf.len().min(self.out.len() - self.pos);
        buf[..n].copy_from_slice(&self.out[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Encodes to armor; call [`ArmorWriter::finish`] at the end.
pub struct ArmorWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> ArmorWriter<W> {
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(BEGIN.as_bytes())?;
        inner.write_all(b"\n")?;
        Ok(ArmorWriter { inner, pending: Vec::new() })
    }

    fn flush_lines(&mut self, all: bool) -> io::Result<()> {
        const RAW: usize = COLUMNS / 4 * 3;
        let full = self.pending.len() / RAW * RAW;
        let mut text = String::with_capacity(full / 3 * 4 + full / RAW + 8);
        for c in self.pending[..full].chunks(RAW) {
            STANDARD.encode_string(c, &mut text);
            text.push('\n');
        }
        self.pending.drain(..full);
        if all && !self.pending.is_empty() {
            STANDARD.encode_string(&self.pending, &mut text);
            text.push('\n');
            self.pending.clear();
        }
        self.inner.write_all(text.as_bytes())
    }

    /// Writes the last line and the END line; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_lines(true)?;
        self.inner.write_all(END.as_bytes())?;
        self.inner.write_all(b"\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ArmorWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= 48 * 1024 {
            self.flush_lines(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(data: &[u8]) -> Vec<u8> {
        let mut w = ArmorWriter::new(Vec::new()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn unarm(text: &[u8]) -> io::Result<Vec<u8>> {
        let mut r = io::BufReader::new(text);
        assert!(detect(&mut r).unwrap());
        let mut out = Vec::new();
        ArmorReader::new(r).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn round_trips_at_line_boundaries() {
        for n in [0, 1, 47, 48, 49, 96, 100_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
            let a = arm(&data);
            assert_eq!(unarm(&a).unwrap(), data, "{n}");
            let mut crlf = String::from_utf8(a.clone()).unwrap().replace('\n', "\r\n");
            crlf.insert_str(0, " \n\t");
            assert_eq!(unarm(crlf.as_bytes()).unwrap(), data, "{n}");
        }
    }

    #[test]
    fn refuses_sloppy_armor() {
        let good = String::from_utf8(arm(&[5u8; 100])).unwrap();
        for bad in [
            good.replace("=\n", "\n"),
            good.replace(BEGIN, "-----BEGIN AGE ENCRYPTED FILE----- "),
            format!("{good}garbage\n"),
            good.replace(END, ""),
            good.replacen('\n', "\nVersion: 1\n\n", 1),
        ] {
            let e = unarm(bad.as_bytes()).unwrap_err();
            assert!(armor_error(&e).is_some(), "{bad}: {e}");
        }
    }
}
