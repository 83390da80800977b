//! The hash chain: every record carries `seq`, `prev_hash` and its own `hash`.
//!
//! A record's *canonical line* is the line as written without its `"hash"` member (the last
//! member of the record's last object, so removing it is a byte-exact text operation; nothing is
//! re-serialised). `hash` is the SHA-256 (lowercase hex) of the canonical line, and the next
//! record's `prev_hash` is that same value. The first record of a chain has `seq` 1 and a
//! `prev_hash` of 64 zeros.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The member appended to every record; the record's hash follows it.
const HASH_MEMBER: &str = ",\"hash\":\"";

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// Records checked.
    pub records: usize,
    /// `seq` of the first record (`None` for an empty file).
    pub first_seq: Option<u64>,
    /// `seq` of the last record.
    pub last_seq: Option<u64>,
    /// `prev_hash` of the first record: 64 zeros when the file starts the chain, otherwise the
    /// hash of the last record of the previous (rotated) file.
    pub first_prev_hash: Option<String>,
    /// `hash` of the last record: the `prev_hash` the next record (or file) must carry.
    pub last_hash: Option<String>,
}

impl VerifyReport {
    /// True when the first record is the start of a chain (`seq` 1, zero `prev_hash`).
    pub fn starts_chain(&self) -> bool {
        self.first_seq == Some(1)
    }
}

/// The first record where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: line {line}: {reason}", path.display())]
pub struct ChainError {
    pub path: PathBuf,
    /// 1-based line number in `path`; 0 when the file itself cannot be read.
    pub line: usize,
    pub reason: String,
}

/// SHA-256 of a canonical line, lowercase hex.
pub fn hash_line(canonical: &[u8]) -> String {
    hex::encode(Sha256::digest(canonical))
}

/// Chain state of the writer: the `seq` and `prev_hash` the next record gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Chain {
    pub next_seq: u64,
    pub prev_hash: String,
}

impl Chain {
    pub fn genesis() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_string(),
        }
    }

    /// Appends the `hash` member to `body` (a serialised record whose last `depth` characters
    /// are the closing braces of the object holding the chain fields and of its parents),
    /// advances the chain and returns the line to write.
    pub fn seal(&mut self, body: &str, depth: usize) -> String {
        let hash = hash_line(body.as_bytes());
        let split = body.len().saturating_sub(depth);
        let (head, tail) = body.split_at(split);
        let mut line = String::with_capacity(body.len() + HASH_MEMBER.len() + 65);
        line.push_str(head);
        line.push_str(HASH_MEMBER);
        line.push_str(&hash);
        line.push('"');
        line.push_str(tail);
        self.next_seq += 1;
        self.prev_hash = hash;
        line
    }

    /// The chain continuing after `line` (the last record written), when it is a record.
    pub fn after(line: &[u8]) -> Result<Self, String> {
        let record = parse_record(line)?;
        Ok(Self {
            next_seq: record.seq.saturating_add(1),
            prev_hash: record.computed_hash,
        })
    }
}

/// A record line taken apart.
#[derive(Debug)]
struct Record {
    seq: u64,
    prev_hash: String,
    stored_hash: String,
    computed_hash: String,
}

fn is_hash(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits off the `hash` member: returns (canonical line, stored hash).
fn canonical(line: &str) -> Result<(String, &str), String> {
    let start = line
        .rfind(HASH_MEMBER)
        .ok_or_else(|| "no \"hash\" member".to_string())?;
    let value_start = start + HASH_MEMBER.len();
    let hash = line
        .get(value_start..value_start + 64)
        .ok_or_else(|| "\"hash\" member truncated".to_string())?;
    let rest = line
        .get(value_start + 64..)
        .ok_or_else(|| "\"hash\" member truncated".to_string())?;
    let closing = rest
        .strip_prefix('"')
        .ok_or_else(|| "\"hash\" is not 64 hex digits".to_string())?;
    if !is_hash(hash) {
        return Err("\"hash\" is not 64 lowercase hex digits".to_string());
    }
    if closing.is_empty() || !closing.bytes().all(|b| b == b'}') {
        return Err("\"hash\" is not the last member of the record".to_string());
    }
    let mut canonical = String::with_capacity(start + closing.len());
    canonical.push_str(&line[..start]);
    canonical.push_str(closing);
    Ok((canonical, hash))
}

/// Where the chain fields live: top level for the JSON format, `metadata.sequence` and
/// `unmapped.{prev_hash,hash}` for OCSF.
fn chain_fields(value: &Value) -> Result<(u64, &str, &str), String> {
    let (seq, holder) = if value.get("class_uid").is_some() {
        (
            value.pointer("/metadata/sequence"),
            value
                .get("unmapped")
                .ok_or_else(|| "OCSF record without \"unmapped\"".to_string())?,
        )
    } else {
        (value.get("seq"), value)
    };
    let seq = seq
        .and_then(Value::as_u64)
        .ok_or_else(|| "no sequence number".to_string())?;
    let prev = holder
        .get("prev_hash")
        .and_then(Value::as_str)
        .ok_or_else(|| "no \"prev_hash\"".to_string())?;
    let hash = holder
        .get("hash")
        .and_then(Value::as_str)
        .ok_or_else(|| "no \"hash\" field where expected".to_string())?;
    Ok((seq, prev, hash))
}

fn parse_record(line: &[u8]) -> Result<Record, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("not a JSON record ({e})"))?;
    let (seq, prev_hash, field_hash) = chain_fields(&value)?;
    if !is_hash(prev_hash) {
        return Err("\"prev_hash\" is not 64 lowercase hex digits".to_string());
    }
    let (canonical, stored_hash) = canonical(text)?;
    if stored_hash != field_hash {
        return Err("\"hash\" member is not the record's chain hash".to_string());
    }
    Ok(Record {
        seq,
        prev_hash: prev_hash.to_string(),
        stored_hash: stored_hash.to_string(),
        computed_hash: hash_line(canonical.as_bytes()),
    })
}

/// Where the previous file of a set ended.
struct Anchor {
    seq: u64,
    hash: String,
}

/// Verifies one file on its own: every record's own hash, the `prev_hash` link between
/// consecutive records and consecutive `seq` numbers. The first record must either start a
/// chain (`seq` 1, zero `prev_hash`) or continue one (`seq` > 1, non-zero `prev_hash`, as in a
/// rotated file; check the link to its predecessor with [`verify_files`]).
pub fn verify_file(path: impl AsRef<Path>) -> Result<VerifyReport, ChainError> {
    verify_one(path.as_ref(), None)
}

/// Verifies a set of files that together hold one chain, oldest first (for a rotated log:
/// `audit.jsonl.N`, …, `audit.jsonl.1`, `audit.jsonl`; see [`rotation_set`]). Each file is
/// verified as by [`verify_file`] and the first record of each file must continue the last
/// record of the file before it. Empty files are skipped.
pub fn verify_files<P: AsRef<Path>>(paths: &[P]) -> Result<VerifyReport, ChainError> {
    let mut total = VerifyReport::default();
    let mut anchor: Option<Anchor> = None;
    for path in paths {
        let report = verify_one(path.as_ref(), anchor.as_ref())?;
        if report.records == 0 {
            continue;
        }
        if total.records == 0 {
            total.first_seq = report.first_seq;
            total.first_prev_hash = report.first_prev_hash.clone();
        }
        total.records += report.records;
        total.last_seq = report.last_seq;
        total.last_hash = report.last_hash.clone();
        if let (Some(seq), Some(hash)) = (report.last_seq, report.last_hash) {
            anchor = Some(Anchor { seq, hash });
        }
    }
    Ok(total)
}

/// The files of a rotated log that exist, oldest first: `path.N` … `path.1`, then `path`.
pub fn rotation_set(path: impl AsRef<Path>) -> Vec<PathBuf> {
    let path = path.as_ref();
    let mut rotated = Vec::new();
    let mut n = 1;
    loop {
        let candidate = rotated_path(path, n);
        if !candidate.exists() {
            break;
        }
        rotated.push(candidate);
        n += 1;
    }
    rotated.reverse();
    if path.exists() {
        rotated.push(path.to_path_buf());
    }
    rotated
}

/// `path` with `.n` appended to its file name.
pub(crate) fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn verify_one(path: &Path, anchor: Option<&Anchor>) -> Result<VerifyReport, ChainError> {
    let error = |line: usize, reason: String| ChainError {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let data = std::fs::read(path).map_err(|e| error(0, format!("cannot read: {e}")))?;
    let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    if lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    let mut report = VerifyReport::default();
    let mut previous: Option<Record> = None;
    for (index, line) in lines.iter().enumerate() {
        let number = index + 1;
        if line.is_empty() {
            return Err(error(number, "empty line".to_string()));
        }
        let record = parse_record(line).map_err(|reason| error(number, reason))?;
        if record.computed_hash != record.stored_hash {
            return Err(error(
                number,
                "record hash does not match its content (record modified)".to_string(),
            ));
        }
        match (&previous, anchor) {
            (Some(prev), _) => {
                if record.prev_hash != prev.stored_hash {
                    return Err(error(
                        number,
                        format!(
                            "prev_hash does not match the hash of line {} (a record was modified, deleted, inserted or reordered)",
                            number - 1
                        ),
                    ));
                }
                if record.seq != prev.seq.saturating_add(1) {
                    return Err(error(
                        number,
                        format!("seq {} does not follow seq {}", record.seq, prev.seq),
                    ));
                }
            }
            (None, Some(anchor)) => {
                if record.prev_hash != anchor.hash {
                    return Err(error(
                        number,
                        "prev_hash does not match the hash of the last record of the previous file"
                            .to_string(),
                    ));
                }
                if record.seq != anchor.seq.saturating_add(1) {
                    return Err(error(
                        number,
                        format!(
                            "seq {} does not follow seq {} of the previous file",
                            record.seq, anchor.seq
                        ),
                    ));
                }
            }
            (None, None) => {
                let genesis = record.prev_hash == GENESIS_HASH;
                if genesis != (record.seq == 1) {
                    return Err(error(
                        number,
                        format!(
                            "seq {} with {} prev_hash: a chain starts with seq 1 and a zero prev_hash",
                            record.seq,
                            if genesis { "a zero" } else { "a non-zero" }
                        ),
                    ));
                }
            }
        }
        if previous.is_none() {
            report.first_seq = Some(record.seq);
            report.first_prev_hash = Some(record.prev_hash.clone());
        }
        report.records += 1;
        report.last_seq = Some(record.seq);
        report.last_hash = Some(record.stored_hash.clone());
        previous = Some(record);
    }
    Ok(report)
}

/// The last line of a file (without its newline) and whether the file ends with a newline;
/// `None` when the file is missing or empty. Reads backwards in blocks, so large files are
/// cheap.
pub(crate) fn last_line(path: &Path) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    const BLOCK: u64 = 8192;
    let mut tail: Vec<u8> = Vec::new();
    let mut pos = len;
    loop {
        let start = pos.saturating_sub(BLOCK);
        let mut block = vec![0; usize::try_from(pos - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
        pos = start;
        let ends_with_newline = tail.last() == Some(&b'\n');
        let body = if ends_with_newline {
            &tail[..tail.len() - 1]
        } else {
            &tail[..]
        };
        if let Some(newline) = body.iter().rposition(|&b| b == b'\n') {
            return Ok(Some((body[newline + 1..].to_vec(), ends_with_newline)));
        }
        if pos == 0 {
            return Ok(Some((body.to_vec(), ends_with_newline)));
        }
    }
}
