//! Configuration: loading and validating AirGate's custom resources.
//!
//! AirGate reads Kubernetes-style YAML resources, `AIGateway` and `API`, with
//! `apiVersion` `hub.traefik.io/v1alpha1` or `airgate.io/v1alpha1`, from a file
//! or a folder of `*.yaml` / `*.yml` files (multi-document, `---`).
//!
//! - [`load_path`] / [`parse_str`] parse, then validate, and collect *every*
//!   problem as a [`ConfigIssue`] naming the file, the document (1-based,
//!   counting non-empty documents), the resource and the field path
//!   (`spec.backends[1].timeout`).
//! - Documents of other kinds (`Namespace`, `ConfigMap`, ...) are skipped with
//!   a warning in [`LoadedConfig::warnings`].
//! - [`unenforced_warnings`] lists sections that were parsed but that this
//!   build does not enforce.

use std::fmt;
use std::path::PathBuf;

pub mod crds;
mod enforcement;
pub(crate) mod loader;
mod resources;
mod units;
pub(crate) mod validate;

#[cfg(test)]
mod tests;

pub use enforcement::{unenforced_warnings, Enforcement, UNENFORCED_MESSAGE};
pub use loader::{digest_path, load_path, parse_str};
pub use resources::*;
pub use units::{ByteSize, Duration, UnitError};

/// Everything loaded from a file or folder.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    pub gateways: Vec<Located<AiGateway>>,
    pub apis: Vec<Located<Api>>,
    /// Non-fatal issues, e.g. documents of kinds AirGate does not handle.
    pub warnings: Vec<ConfigIssue>,
    /// SHA-256 (hex) of the configuration's bytes: of the file, or over every file of a folder
    /// with its name. Changes exactly when the bytes do (a reload of the same bytes is no
    /// change).
    pub digest: String,
}

/// A resource together with where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Located<T> {
    pub source: Source,
    pub resource: T,
}

/// A document in a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub file: PathBuf,
    /// 1-based index among the file's non-empty documents.
    pub document: usize,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)
    }
}

/// An error or warning about the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub file: PathBuf,
    /// 1-based document index, when the issue is about one document.
    pub document: Option<usize>,
    /// e.g. `"AIGateway ml-team/sovereign-ai-gateway"`.
    pub resource: Option<String>,
    /// e.g. `"spec.backends[0].timeout"`.
    pub field: Option<String>,
    pub message: String,
}

impl ConfigIssue {
    /// An issue about a whole file. Credentials the message quotes (a URL's password, a
    /// token) are redacted here, so no caller can print them.
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        let message = message.into();
        ConfigIssue {
            file: file.into(),
            document: None,
            resource: None,
            field: None,
            message: crate::redact::credentials(&message).into_owned(),
        }
    }

    /// An issue about one document of a file.
    pub fn at(source: &Source, message: impl Into<String>) -> Self {
        ConfigIssue {
            document: Some(source.document),
            ..ConfigIssue::new(source.file.clone(), message)
        }
    }

    /// Sets the resource label.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Sets the field path.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// `"{file}: document {n} ({resource}): {field}: {message}"`, absent parts omitted.
impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        write_place(
            f,
            self.document,
            self.resource.as_deref(),
            self.field.as_deref(),
        )?;
        write!(f, ": {}", self.message)
    }
}

/// `": document {n} ({resource}): {field}"`, absent parts omitted: where a problem is, after
/// its file, as every configuration diagnostic (`ConfigIssue`, `validate`'s findings) writes it.
pub fn write_place(
    f: &mut fmt::Formatter<'_>,
    document: Option<usize>,
    resource: Option<&str>,
    field: Option<&str>,
) -> fmt::Result {
    if let Some(document) = document {
        write!(f, ": document {document}")?;
    }
    if let Some(resource) = resource {
        write!(f, " ({resource})")?;
    }
    if let Some(field) = field {
        write!(f, ": {field}")?;
    }
    Ok(())
}

impl std::error::Error for ConfigIssue {}

/// All the errors of a failed load, as one `std::error::Error` (one issue per line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", format_issues(.0))]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl From<Vec<ConfigIssue>> for ConfigErrors {
    fn from(issues: Vec<ConfigIssue>) -> Self {
        ConfigErrors(issues)
    }
}

/// One issue per line.
pub fn format_issues(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
