//! Policy as code: the checks a change passes in CI before it is signed and applied.
//!
//! - [`diff`]: `airgate diff OLD NEW`, the breaking changes between two configurations.
//! - [`openapi_diff`]: the breaking changes between two OpenAPI specs of an `API`, with
//!   oasdiff's check ids; `diff` runs it on each `API` whose spec it can read on both sides.
//!
//! Issue 14 is in progress: compliance rule packs, CEL rules and SARIF output are not built
//! yet (docs/policy.md).

pub mod diff;
pub mod openapi_diff;
