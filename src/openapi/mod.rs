//! OpenAPI documents named by an `API` resource's `openApiSpec`: reading them ([`document`]),
//! shared by `airgate diff` (breaking changes between two specs) and by run-time enforcement.

pub mod document;

pub use document::{read_file, resolve_path, Spec, SpecVersion};
