//! Policy as code: the checks a change passes in CI before it is signed and applied, from the
//! one `airgate` binary (docs/policy.md).
//!
//! - [`gate`]: `airgate validate`: the loader's findings, the built-in [`rules`] packs
//!   (`baseline`, `pci-dss`, `hipaa`) and the user's CEL rules ([`user_rules`]).
//! - [`diff`]: `airgate diff OLD NEW`, the breaking changes between two configurations.
//! - [`openapi_diff`]: the breaking changes between two OpenAPI specs of an `API`, with
//!   oasdiff's check ids; `diff` runs it on each `API` whose spec it can read on both sides.
//! - [`finding`], [`report`], [`sarif`]: one finding shape, printed as text, JSON or SARIF.
//! - [`documents`], [`yaml_lines`]: the input as written: lines, raw documents, `Namespace`s.

pub mod diff;
pub mod documents;
pub mod finding;
pub mod gate;
pub mod openapi_diff;
pub mod report;
pub mod rules;
pub mod sarif;
pub mod user_rules;
pub mod yaml_lines;
