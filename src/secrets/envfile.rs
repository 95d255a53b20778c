//! Docker Compose `.env` files as a secret target.
//!
//! An edit changes only the lines that assign the key: every other line, comment,
//! blank line, `export ` prefix, line ending (LF or CRLF) and the presence or absence
//! of a final newline stay byte for byte. A key assigned more than once is changed
//! everywhere, so whichever assignment a reader honours holds the new value. Values are
//! quoted so that Compose reads back exactly the bytes written (no interpolation, no
//! comment cut-off). Files are replaced atomically with mode 0600, keeping their owner.
//! This module never logs or formats a value.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::secret::SecretBytes;
use crate::store::{FileMode, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error(
        "the value of {key} cannot be written to an env file safely (it holds a quote together with '$', a line break or NUL); import a value without them"
    )]
    Unquotable { key: String },
    #[error("{path}:{line}: {key} has an opening quote that is never closed; fix the file by hand")]
    Unterminated { path: String, line: usize, key: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One logical entry: one physical line, or several when a quoted value spans lines.
#[derive(Clone)]
struct Entry {
    /// The text without its final line ending.
    text: String,
    ending: &'static str,
    assign: Option<Assign>,
}

#[derive(Debug, Clone)]
struct Assign {
    key: String,
    /// Byte offset where the value starts (after `=` and spaces).
    value_start: usize,
    /// Byte offset just after the value (after a closing quote).
    value_end: usize,
}

/// A parsed env file. Its lines hold values, so they are wiped on drop.
#[derive(Clone, Default)]
pub struct EnvFile {
    entries: Vec<Entry>,
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        for e in &mut self.entries {
            zeroize::Zeroize::zeroize(&mut e.text);
        }
    }
}

impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EnvFile({} lines, [redacted])", self.entries.len())
    }
}

fn split_lines(text: &str) -> Vec<(&str, &'static str)> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('\n') {
            Some(i) => {
                let (line, ending) = if i > 0 && rest.as_bytes()[i - 1] == b'\r' {
                    (&rest[..i - 1], "\r\n")
                } else {
                    (&rest[..i], "\n")
                };
                out.push((line, ending));
                rest = &rest[i + 1..];
            }
            None => {
                out.push((rest, ""));
                rest = "";
            }
        }
    }
    out
}

/// `KEY=` with optional leading spaces and `export `; returns (key, offset after `=`).
fn assignment(line: &str) -> Option<(String, usize)> {
    let trimmed = line.trim_start();
    let mut off = line.len() - trimmed.len();
    let mut rest = trimmed;
    if let Some(r) = rest.strip_prefix("export")
        && r.starts_with([' ', '\t'])
    {
        let r2 = r.trim_start();
        off += rest.len() - r2.len();
        rest = r2;
    }
    let key_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .unwrap_or(rest.len());
    if key_len == 0 || rest.starts_with('#') {
        return None;
    }
    let key = &rest[..key_len];
    let after = &rest[key_len..];
    let after_trim = after.trim_start_matches([' ', '\t']);
    let eq = after_trim.strip_prefix('=')?;
    let consumed = key_len + (after.len() - after_trim.len()) + 1;
    let spaces = eq.len() - eq.trim_start_matches([' ', '\t']).len();
    Some((key.to_string(), off + consumed + spaces))
}

/// Where a value that starts at `s` ends, and its bytes. `None` for an unclosed quote.
fn parse_value(s: &str) -> Option<(usize, String)> {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b'\'') => {
            let end = s[1..].find('\'')?;
            Some((end + 2, s[1..end + 1].to_string()))
        }
        Some(b'"') => {
            let mut out = String::new();
            let mut chars = s[1..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => return Some((i + 2, out)),
                    '\\' => match chars.next() {
                        Some((_, 'n')) => out.push('\n'),
                        Some((_, 'r')) => out.push('\r'),
                        Some((_, 't')) => out.push('\t'),
                        Some((_, e @ ('\\' | '"' | '$'))) => out.push(e),
                        Some((_, other)) => {
                            out.push('\\');
                            out.push(other);
                        }
                        None => return None,
                    },
                    c => out.push(c),
                }
            }
            None
        }
        _ => {
            // Unquoted: up to an inline comment (whitespace then `#`), trimmed.
            let mut end = s.len();
            let b = s.as_bytes();
            for i in 1..b.len() {
                if b[i] == b'#' && (b[i - 1] == b' ' || b[i - 1] == b'\t') {
                    end = i;
                    break;
                }
            }
            if b.first() == Some(&b'#') {
                end = 0;
            }
            let v = s[..end].trim_end();
            Some((v.len(), v.to_string()))
        }
    }
}

impl EnvFile {
    pub fn parse(path_for_messages: &str, text: &str) -> Result<EnvFile, EnvFileError> {
        let lines = split_lines(text);
        let mut entries = Vec::new();
        let mut i = 0;
        while i < lines.len() {
            let (line, ending) = lines[i];
            let start_line = i + 1;
            i += 1;
            let Some((key, value_start)) = assignment(line) else {
                entries.push(Entry { text: line.to_string(), ending, assign: None });
                continue;
            };
            let mut text = line.to_string();
            let mut ending = ending;
            let quoted = matches!(text.as_bytes().get(value_start), Some(b'\'' | b'"'));
            loop {
                match parse_value(&text[value_start..]) {
                    Some((len, _)) => {
                        entries.push(Entry {
                            text,
                            ending,
                            assign: Some(Assign { key, value_start, value_end: value_start + len }),
                        });
                        break;
                    }
                    None if quoted && i < lines.len() => {
                        // A quoted value that continues on the next line.
                        text.push_str(ending);
                        text.push_str(lines[i].0);
                        ending = lines[i].1;
                        i += 1;
                    }
                    None => {
                        return Err(EnvFileError::Unterminated {
                            path: path_for_messages.to_string(),
                            line: start_line,
                            key,
                        });
                    }
                }
            }
        }
        Ok(EnvFile { entries })
    }

    /// The value a reader gets for `key`: the last assignment's.
    pub fn get(&self, key: &str) -> Option<SecretBytes> {
        self.entries
            .iter()
            .rev()
            .filter_map(|e| e.assign.as_ref().map(|a| (e, a)))
            .find(|(_, a)| a.key == key)
            .and_then(|(e, a)| {
                parse_value(&e.text[a.value_start..]).map(|(_, v)| SecretBytes::from(v))
            })
    }

    /// Every key assigned, in order (duplicates included).
    pub fn keys(&self) -> Vec<&str> {
        self.entries.iter().filter_map(|e| e.assign.as_ref().map(|a| a.key.as_str())).collect()
    }

    /// Sets `key` everywhere it is assigned, or appends `KEY=value`.
    pub fn set(&mut self, key: &str, value: &SecretBytes) -> Result<(), EnvFileError> {
        let quoted = zeroize::Zeroizing::new(quote(key, value)?);
        let mut found = false;
        for e in &mut self.entries {
            let Some(a) = &e.assign else { continue };
            if a.key != key {
                continue;
            }
            found = true;
            let suffix = &e.text[a.value_end..];
            // Keep an inline comment after the value; drop trailing blanks.
            let keep = if suffix.trim_start().starts_with('#') {
                suffix.to_string()
            } else {
                String::new()
            };
            let mut text = String::with_capacity(e.text.len() + quoted.len());
            text.push_str(&e.text[..a.value_start]);
            text.push_str(&quoted);
            let value_end = text.len();
            text.push_str(&keep);
            let value_start = a.value_start;
            let old = std::mem::replace(&mut e.text, text);
            zeroize::Zeroize::zeroize(&mut old.into_bytes());
            e.assign = Some(Assign { key: key.to_string(), value_start, value_end });
        }
        if !found {
            let ending = self.dominant_ending();
            // A file without a final newline keeps that shape: the separator goes
            // before the new line.
            let mut ends_without_newline = false;
            if let Some(last) = self.entries.last_mut()
                && last.ending.is_empty()
            {
                last.ending = ending;
                ends_without_newline = true;
            }
            let text = format!("{key}={}", quoted.as_str());
            let value_start = key.len() + 1;
            let value_end = text.len();
            self.entries.push(Entry {
                text,
                ending: if ends_without_newline { "" } else { ending },
                assign: Some(Assign { key: key.to_string(), value_start, value_end }),
            });
        }
        Ok(())
    }

    fn dominant_ending(&self) -> &'static str {
        let crlf = self.entries.iter().filter(|e| e.ending == "\r\n").count();
        let lf = self.entries.iter().filter(|e| e.ending == "\n").count();
        if crlf > lf { "\r\n" } else { "\n" }
    }

    pub fn render(&self) -> zeroize::Zeroizing<String> {
        let mut out = zeroize::Zeroizing::new(String::new());
        for e in &self.entries {
            out.push_str(&e.text);
            out.push_str(e.ending);
        }
        out
    }
}

fn safe_unquoted(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"_./+=:@%,~^-".contains(&c)
}

/// The value as Compose must see it: bare when only safe characters, else single
/// quotes (literal: no interpolation, no escapes), else double quotes with escapes.
fn quote(key: &str, value: &SecretBytes) -> Result<String, EnvFileError> {
    let unquotable = || EnvFileError::Unquotable { key: key.to_string() };
    let s = value.as_str().ok_or_else(unquotable)?;
    if !s.is_empty() && s.bytes().all(safe_unquoted) {
        return Ok(s.to_string());
    }
    if s.contains('\0') {
        return Err(unquotable());
    }
    if !s.contains(['\'', '\n', '\r']) {
        return Ok(format!("'{s}'"));
    }
    if s.contains('$') {
        return Err(unquotable());
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    Ok(out)
}

/// Reads `path` (an absent file is an empty one).
pub fn read(path: &Path) -> Result<EnvFile, EnvFileError> {
    let text = match std::fs::read(path).map(zeroize::Zeroizing::new) {
        Ok(b) => zeroize::Zeroizing::new(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            zeroize::Zeroizing::new(String::new())
        }
        Err(source) => {
            return Err(StoreError::Io { op: "read", path: path.to_path_buf(), source }.into());
        }
    };
    EnvFile::parse(&path.display().to_string(), &text)
}

/// Sets `key` in the env file at `path`, atomically, mode 0600, owner kept.
pub fn set(path: &Path, key: &str, value: &SecretBytes) -> Result<(), EnvFileError> {
    let mut file = read(path)?;
    file.set(key, value)?;
    let (uid, gid) = match std::fs::metadata(path) {
        Ok(m) => (Some(m.uid()), Some(m.gid())),
        Err(_) => (None, None),
    };
    let mode = FileMode { mode: 0o600, uid, gid };
    crate::store::atomic_write(path, file.render().as_bytes(), mode)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> SecretBytes {
        SecretBytes::from_slice(s.as_bytes())
    }

    fn set_text(text: &str, key: &str, value: &str) -> String {
        let mut f = EnvFile::parse("t", text).unwrap();
        f.set(key, &v(value)).unwrap();
        f.render().to_string()
    }

    #[test]
    fn only_the_key_changes() {
        let text = "# PazPaz production\r\nexport A=1\r\n\r\nB = 'x y' # keep me\r\nC=\"two\nlines\"\r\nB=dup";
        let out = set_text(text, "B", "new");
        assert_eq!(
            out,
            "# PazPaz production\r\nexport A=1\r\n\r\nB = new # keep me\r\nC=\"two\nlines\"\r\nB=new"
        );
        let out = set_text(text, "A", "n2");
        assert!(out.starts_with("# PazPaz production\r\nexport A=n2\r\n"), "{out}");
        // Append keeps "no final newline" and CRLF.
        let out = set_text(text, "D", "d");
        assert_eq!(out, format!("{text}\r\nD=d"));
        let out = set_text("A=1\n", "D", "d");
        assert_eq!(out, "A=1\nD=d\n");
        assert_eq!(set_text("", "D", "d"), "D=d\n");
    }

    #[test]
    fn values_round_trip_for_any_generated_character() {
        for value in [
            "abc+/=",
            "a b",
            "has#hash",
            "x #y",
            "$HOME",
            "${X}",
            "it's",
            "q\"uote",
            "back\\slash",
            "=lead",
            "tab\there",
            "",
            "multi\nline",
            "semi;colon`tick`",
        ] {
            let out = set_text("K=old\nOTHER=1\n", "K", value);
            let f = EnvFile::parse("t", &out).unwrap();
            assert_eq!(f.get("K").unwrap().expose(), value.as_bytes(), "{value:?} -> {out:?}");
            assert_eq!(f.get("OTHER").unwrap().expose(), b"1");
        }
        // Interpolation-safe: `$` never appears unquoted or in double quotes.
        assert_eq!(set_text("", "K", "$X"), "K='$X'\n");
        assert!(quote("K", &v("it's $X")).is_err());
    }

    #[test]
    fn reading_follows_compose() {
        let f =
            EnvFile::parse("t", "A=1 # c\nB='l#t'\nC=\"e\\\"s\"\nexport D=4\nA=2\n#E=5\n").unwrap();
        assert_eq!(f.get("A").unwrap().expose(), b"2");
        assert_eq!(f.get("B").unwrap().expose(), b"l#t");
        assert_eq!(f.get("C").unwrap().expose(), b"e\"s");
        assert_eq!(f.get("D").unwrap().expose(), b"4");
        assert!(f.get("E").is_none());
        assert!(matches!(
            EnvFile::parse("t", "A='open\nB=2\n"),
            Err(EnvFileError::Unterminated { line: 1, .. })
        ));
    }
}
