//! OpenAPI documents named by an `API` resource's `openApiSpec`: reading them ([`document`]),
//! shared by `airgate diff` (breaking changes between two specs) and by run-time enforcement:
//! compiling one for a configuration snapshot ([`compile`]: the path templates ([`paths`]), the
//! operations, a `jsonschema` validator per JSON request body ([`schema`]: OpenAPI 3.0's
//! dialect translated to draft 4, 3.1 as 2020-12)), checking a request against it ([`check`],
//! with bodies parsed strictly by [`json`]), and fetching specs named by `url` with a
//! last-known-good copy per URL ([`source`]). Pure of HTTP serving: `apis::openapi` is the
//! request stage that uses it, `app::specs` decides where each `API`'s spec comes from.

pub mod check;
pub mod compile;
pub mod document;
pub mod json;
pub mod paths;
pub mod schema;
pub mod source;
pub mod tape;

pub use check::{BodyCheck, BodyExpectation, Matched, Violation};
pub use compile::CompiledSpec;
pub use document::{read_file, read_text, resolve_path, Spec, SpecVersion};
