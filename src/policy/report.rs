//! What `airgate validate` found, and its three outputs: human lines, JSON, SARIF 2.1.0
//! ([`super::sarif`]).

use std::path::PathBuf;

use serde::Serialize;

use super::finding::{Finding, Severity};

/// An input that loaded, with what it holds.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    pub path: PathBuf,
    pub gateways: usize,
    pub apis: usize,
}

/// Output formats of `validate` and `diff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Sarif,
}

impl Format {
    pub const NAMES: [&'static str; 3] = ["text", "json", "sarif"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub loaded: Vec<Loaded>,
}

impl Report {
    /// Findings in file and line order, errors first on a line.
    pub fn sort(&mut self) {
        self.findings.sort_by(|a, b| {
            (&a.file, a.document, a.line, a.severity, &a.rule, &a.field)
                .cmp(&(&b.file, b.document, b.line, b.severity, &b.rule, &b.field))
        });
        self.findings.dedup();
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// 1 when any finding is an error, else 0 (warnings alone pass).
    pub fn exit_code(&self) -> i32 {
        i32::from(self.count(Severity::Error) > 0)
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Json => self.json(),
            Format::Sarif => super::sarif::render(&self.findings),
        }
    }

    /// One line per finding, then `ok:` for each input with no error.
    fn text(&self) -> String {
        let mut out = String::new();
        for finding in &self.findings {
            out.push_str(&format!("{finding}\n"));
        }
        for loaded in &self.loaded {
            let failed = self
                .findings
                .iter()
                .any(|f| f.severity == Severity::Error && f.file.starts_with(&loaded.path));
            if !failed {
                out.push_str(&format!(
                    "ok: {} ({} AIGateway, {} API)\n",
                    loaded.path.display(),
                    loaded.gateways,
                    loaded.apis
                ));
            }
        }
        out
    }

    fn json(&self) -> String {
        #[derive(Serialize)]
        struct Summary {
            errors: usize,
            warnings: usize,
        }
        #[derive(Serialize)]
        struct Out<'a> {
            findings: &'a [Finding],
            loaded: &'a [Loaded],
            summary: Summary,
        }
        let out = Out {
            findings: &self.findings,
            loaded: &self.loaded,
            summary: Summary {
                errors: self.count(Severity::Error),
                warnings: self.count(Severity::Warning),
            },
        };
        serde_json::to_string_pretty(&out).unwrap_or_default() + "\n"
    }
}
