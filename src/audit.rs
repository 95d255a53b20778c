//! The tamper-evident audit log: one JSON line per operation, hash-chained.
//!
//! Each record carries a sequence number, the SHA-256 of the previous record's line
//! and the SHA-256 of its own content, so an edited, deleted, inserted or reordered
//! record breaks the chain at the first bad one. A head file (`audit.head`) holds the
//! last sequence number and hash, so that cutting records off the end shows too.
//! Records name objects (name, version, serial, fingerprint); they never hold a key or
//! secret value, and this module's API takes no value that could be one.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::output::{Human, Table};
use crate::{Context, Error, Exit};

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot {op} the audit log {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("audit log {path}, record {line}: {detail}")]
    Broken { path: PathBuf, line: usize, detail: String },
}

impl AuditError {
    pub fn exit(&self) -> Exit {
        Exit::Failed
    }
}

/// What an audit record is about. Every field is an identifier, never a value.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Object {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl Object {
    pub fn new(kind: impl Into<String>, name: impl Into<String>) -> Object {
        Object { kind: kind.into(), name: name.into(), ..Object::default() }
    }
    pub fn version(mut self, v: u64) -> Object {
        self.version = Some(v);
        self
    }
    pub fn serial(mut self, s: impl Into<String>) -> Object {
        self.serial = Some(s.into());
        self
    }
    pub fn fingerprint(mut self, f: impl Into<String>) -> Object {
        self.fingerprint = Some(f.into());
        self
    }
}

/// The outcome of an audited operation.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Ok,
    Failed,
    Skipped,
}

/// An operation to record, before it is numbered and chained.
#[derive(Debug, Clone)]
pub struct Entry {
    pub action: String,
    pub object: Object,
    pub result: Outcome,
    /// A human explanation (an error message). Never a value.
    pub detail: Option<String>,
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    pub time: String,
    pub uid: u32,
    pub pid: u32,
    pub command: String,
    pub action: String,
    pub object: Object,
    pub result: Outcome,
    /// A human explanation (an error message). Never a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Set when `KEYWARD_NOW` replaced the clock.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated_clock: bool,
    pub prev: String,
    pub hash: String,
}

/// The fields of a record before it is chained.
#[derive(Debug, Serialize)]
struct Unchained<'a> {
    seq: u64,
    time: &'a str,
    uid: u32,
    pid: u32,
    command: &'a str,
    action: &'a str,
    object: &'a Object,
    result: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    simulated_clock: bool,
    prev: &'a str,
}

impl Record {
    fn content_hash(&self) -> String {
        let u = Unchained {
            seq: self.seq,
            time: &self.time,
            uid: self.uid,
            pid: self.pid,
            command: &self.command,
            action: &self.action,
            object: &self.object,
            result: self.result,
            detail: self.detail.as_deref(),
            simulated_clock: self.simulated_clock,
            prev: &self.prev,
        };
        // Serializing a struct of strings and integers cannot fail.
        let bytes = serde_json::to_vec(&u).unwrap_or_default();
        crate::util::sha256_hex(&bytes)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// The audit log of one state folder.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
    command: String,
}

impl AuditLog {
    pub fn new(path: PathBuf, command: &str) -> AuditLog {
        AuditLog { path, command: command.to_string() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn head_path(&self) -> PathBuf {
        self.path.with_extension("head")
    }

    fn err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> AuditError + '_ {
        move |source| AuditError::Io { op, path: self.path.clone(), source }
    }

    /// Appends one record. `detail` is for error messages: never pass a value.
    pub fn append(
        &self,
        action: &str,
        object: Object,
        result: Outcome,
        detail: Option<&str>,
    ) -> Result<(), AuditError> {
        self.append_batch(vec![Entry {
            action: action.to_string(),
            object,
            result,
            detail: detail.map(String::from),
        }])
    }

    /// Appends several records (one per operation, each chained to the one before) with
    /// one write and one fsync, for commands that do many operations at once.
    pub fn append_batch(&self, entries: Vec<Entry>) -> Result<(), AuditError> {
        if entries.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir).map_err(self.err("create the folder of"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(self.err("open"))?;
        // Serializes appenders, including read-only commands that audit a reveal.
        file.lock().map_err(self.err("lock"))?;
        let (mut seq, mut prev) = match last_line(&mut file).map_err(self.err("read"))? {
            None => (1, GENESIS.to_string()),
            Some(line) => {
                let last: Record = serde_json::from_str(&line).map_err(|e| AuditError::Broken {
                    path: self.path.clone(),
                    line: 0,
                    detail: format!(
                        "the last record cannot be read ({e}); run 'keyward audit verify' and keep the damaged log as evidence"
                    ),
                })?;
                (last.seq + 1, crate::util::sha256_hex(line.as_bytes()))
            }
        };
        let mut text = String::new();
        let mut line_hash = String::new();
        for e in entries {
            let mut record = Record {
                seq,
                time: crate::util::fmt_time(crate::util::now()),
                uid: crate::util::uid(),
                pid: std::process::id(),
                command: self.command.clone(),
                action: e.action,
                object: e.object,
                result: e.result,
                detail: e.detail,
                simulated_clock: crate::util::clock_overridden(),
                prev: prev.clone(),
                hash: String::new(),
            };
            record.hash = record.content_hash();
            let line = serde_json::to_string(&record).map_err(|e| AuditError::Broken {
                path: self.path.clone(),
                line: seq as usize,
                detail: e.to_string(),
            })?;
            line_hash = crate::util::sha256_hex(line.as_bytes());
            text.push_str(&line);
            text.push('\n');
            prev = line_hash.clone();
            seq += 1;
        }
        file.write_all(text.as_bytes()).map_err(self.err("append to"))?;
        file.sync_data().map_err(self.err("fsync"))?;
        let head = serde_json::to_vec(&Head { seq: seq - 1, hash: line_hash }).unwrap_or_default();
        crate::store::atomic_write(&self.head_path(), &head, crate::store::FileMode::PRIVATE)
            .map_err(|e| AuditError::Io {
                op: "write the head of",
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
        Ok(())
    }

    /// Every record, oldest first, without checking the chain.
    pub fn records(&self) -> Result<Vec<Record>, AuditError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(AuditError::Io { op: "open", path: self.path.clone(), source: e });
            }
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(self.err("read"))?;
            let rec = serde_json::from_str(&line).map_err(|e| AuditError::Broken {
                path: self.path.clone(),
                line: i + 1,
                detail: format!("not a valid record: {e}"),
            })?;
            out.push(rec);
        }
        Ok(out)
    }

    /// Checks the whole chain; returns the number of records.
    pub fn verify(&self) -> Result<u64, AuditError> {
        let broken = |line: usize, detail: String| AuditError::Broken {
            path: self.path.clone(),
            line,
            detail,
        };
        let head: Option<Head> = match fs::read(self.head_path()) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(|e| {
                broken(
                    0,
                    format!("the head file {} cannot be read: {e}", self.head_path().display()),
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(AuditError::Io {
                    op: "read the head of",
                    path: self.path.clone(),
                    source: e,
                });
            }
        };
        let file = match File::open(&self.path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(AuditError::Io { op: "open", path: self.path.clone(), source: e });
            }
        };
        let mut prev = GENESIS.to_string();
        let mut count = 0u64;
        if let Some(file) = file {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let n = i + 1;
                let line = line.map_err(self.err("read"))?;
                let rec: Record = serde_json::from_str(&line).map_err(|e| {
                    broken(n, format!("not a valid record ({e}): it was edited or damaged"))
                })?;
                if rec.seq != n as u64 {
                    return Err(broken(
                        n,
                        format!(
                            "sequence number {} where {n} was expected: records were deleted, inserted or reordered",
                            rec.seq
                        ),
                    ));
                }
                if rec.prev != prev {
                    return Err(broken(
                        n,
                        format!(
                            "it does not follow record {}: that record was edited, or records were deleted, inserted or reordered",
                            n - 1
                        ),
                    ));
                }
                if rec.content_hash() != rec.hash {
                    return Err(broken(
                        n,
                        "its content does not match its hash: it was edited".into(),
                    ));
                }
                prev = crate::util::sha256_hex(line.as_bytes());
                count = n as u64;
            }
        }
        match head {
            Some(h) if h.seq > count => Err(broken(
                count as usize + 1,
                format!(
                    "the log ends at record {count} but {} were written: records were cut off the end",
                    h.seq
                ),
            )),
            Some(h) if h.seq == count && h.hash != prev => Err(broken(
                count as usize,
                "the last record does not match the head file: it was replaced".into(),
            )),
            // The head lags by one when a crash fell between append and head update.
            Some(h) if h.seq + 1 < count => Err(broken(
                h.seq as usize + 1,
                format!("records after {} were added without keyward", h.seq),
            )),
            None if count > 0 => Err(broken(
                count as usize,
                format!("the head file {} is missing", self.head_path().display()),
            )),
            _ => Ok(count),
        }
    }
}

/// The last non-empty line of a file, read from its end.
fn last_line(file: &mut File) -> std::io::Result<Option<String>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(None);
    }
    let mut window = 4096u64;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut buf = Vec::with_capacity((len - start) as usize);
        Read::by_ref(file).take(len - start).read_to_end(&mut buf)?;
        let trimmed = buf.strip_suffix(b"\n").unwrap_or(&buf);
        if let Some(pos) = trimmed.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(String::from_utf8_lossy(&trimmed[pos + 1..]).into_owned()));
        }
        if start == 0 {
            return Ok(Some(String::from_utf8_lossy(trimmed).into_owned()));
        }
        window *= 4;
    }
}

#[derive(Serialize)]
struct Shown {
    records: Vec<Record>,
}

impl Human for Shown {
    fn human(&self, out: &mut String) {
        let mut t = Table::new(["SEQ", "TIME", "UID", "COMMAND", "ACTION", "OBJECT", "RESULT"]);
        for r in &self.records {
            let mut obj = format!("{} {}", r.object.kind, r.object.name);
            if let Some(v) = r.object.version {
                obj.push_str(&format!(" v{v}"));
            }
            if let Some(s) = &r.object.serial {
                obj.push_str(&format!(" serial {s}"));
            }
            let mut result = format!("{:?}", r.result).to_lowercase();
            if let Some(d) = &r.detail {
                result.push_str(&format!(": {d}"));
            }
            t.row([
                r.seq.to_string(),
                r.time.clone(),
                r.uid.to_string(),
                r.command.clone(),
                r.action.clone(),
                obj,
                result,
            ]);
        }
        t.render(out);
    }
}

/// `keyward audit show`.
pub fn show(ctx: &Context, since: Option<DateTime<Utc>>) -> Result<Exit, Error> {
    let mut records = ctx.audit.records()?;
    if let Some(since) = since {
        records.retain(|r| {
            DateTime::parse_from_rfc3339(&r.time)
                .map(|t| t.with_timezone(&Utc) >= since)
                .unwrap_or(true)
        });
    }
    crate::output::emit(ctx.format, &Shown { records })
}

#[derive(Serialize)]
struct Verified {
    ok: bool,
    records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    first_bad_record: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl Human for Verified {
    fn human(&self, out: &mut String) {
        match &self.error {
            None => out.push_str(&format!(
                "audit log intact: {} records, hash chain verified\n",
                self.records
            )),
            Some(e) => out.push_str(&format!("audit log TAMPERED: {e}\n")),
        }
    }
    fn exit(&self) -> Exit {
        if self.ok { Exit::Ok } else { Exit::Failed }
    }
}

/// `keyward audit verify`.
pub fn verify_command(ctx: &Context) -> Result<Exit, Error> {
    let v = match ctx.audit.verify() {
        Ok(n) => Verified { ok: true, records: n, first_bad_record: None, error: None },
        Err(e @ AuditError::Broken { .. }) => {
            let line = match &e {
                AuditError::Broken { line, .. } => *line,
                AuditError::Io { .. } => 0,
            };
            Verified {
                ok: false,
                records: 0,
                first_bad_record: Some(line),
                error: Some(e.to_string()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    crate::output::emit(ctx.format, &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"), "test");
        for i in 0..n {
            log.append(
                "issue",
                Object::new("leaf", format!("l{i}")).serial("0a"),
                Outcome::Ok,
                None,
            )
            .unwrap();
        }
        (dir, log)
    }

    fn lines(log: &AuditLog) -> Vec<String> {
        fs::read_to_string(log.path()).unwrap().lines().map(String::from).collect()
    }

    fn write_lines(log: &AuditLog, lines: &[String]) {
        let mut s = lines.join("\n");
        s.push('\n');
        fs::write(log.path(), s).unwrap();
    }

    fn bad_line(log: &AuditLog) -> usize {
        match log.verify() {
            Err(AuditError::Broken { line, .. }) => line,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, log) = log_with(5);
        assert_eq!(log.verify().unwrap(), 5);
        assert_eq!(log.records().unwrap().len(), 5);
    }

    #[test]
    fn edit_is_detected_at_the_edited_record() {
        let (_d, log) = log_with(5);
        let mut l = lines(&log);
        l[2] = l[2].replace("\"l2\"", "\"lX\"");
        write_lines(&log, &l);
        assert_eq!(bad_line(&log), 3);
    }

    #[test]
    fn deletion_insertion_reordering_truncation() {
        let (_d, log) = log_with(5);
        let orig = lines(&log);

        let mut del = orig.clone();
        del.remove(1);
        write_lines(&log, &del);
        assert_eq!(bad_line(&log), 2);

        let mut ins = orig.clone();
        ins.insert(2, orig[1].clone());
        write_lines(&log, &ins);
        assert_eq!(bad_line(&log), 3);

        let mut swap = orig.clone();
        swap.swap(1, 2);
        write_lines(&log, &swap);
        assert_eq!(bad_line(&log), 2);

        write_lines(&log, &orig[..4]);
        assert_eq!(bad_line(&log), 5);

        write_lines(&log, &orig);
        assert_eq!(log.verify().unwrap(), 5);
    }
}
