//! The JSON-lines file sink with size-based rotation, and stdout.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::chain::{last_line, rotated_path, Chain};

/// Appends lines to `path`; with `max_bytes`, a line that would take the file past it first moves
/// `path` to `path.1` (`path.1` to `path.2`, … keeping `keep` rotated files).
pub(crate) struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: Option<u64>,
    keep: usize,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: Option<u64>, keep: usize) -> std::io::Result<Self> {
        let mut file = open_append(path)?;
        let mut size = file.metadata()?.len();
        // A crash mid-write leaves a partial last line: end it, so the next record starts its own
        // line (verification then reports the partial one).
        if let Some((_, false)) = last_line(path)? {
            file.write_all(b"\n")?;
            size += 1;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::new(file),
            size,
            max_bytes,
            keep,
        })
    }

    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let len = line.len() as u64 + 1;
        if let Some(max) = self.max_bytes {
            if self.size > 0 && self.size + len > max {
                if let Err(e) = self.rotate() {
                    tracing::error!(error = %e, path = %self.path.display(), "audit log rotation failed");
                }
            }
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = rotated_path(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated_path(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        }
        self.file = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The chain to continue in `path`: after its last record, or after the last record of `path.1`
/// when `path` is empty or missing (rotated just before a restart); a new chain otherwise.
pub(crate) fn resume_chain(path: &Path) -> Chain {
    for candidate in [path.to_path_buf(), rotated_path(path, 1)] {
        match last_line(&candidate) {
            Ok(Some((line, _))) => {
                return match Chain::after(&line) {
                    Ok(chain) => chain,
                    Err(reason) => {
                        tracing::warn!(path = %candidate.display(), reason, "last audit line is not a chained record; starting a new chain");
                        Chain::genesis()
                    }
                };
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %candidate.display(), error = %e, "cannot read the audit log tail; starting a new chain");
                return Chain::genesis();
            }
        }
    }
    Chain::genesis()
}
