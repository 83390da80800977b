//! Policy as code: the checks a change passes in CI before it is signed and applied.
//!
//! - [`diff`]: `airgate diff OLD NEW`, the breaking changes between two configurations.
//!
//! Issue 14 is in progress: compliance rule packs, CEL rules, SARIF output and the OpenAPI
//! checks are not built yet (docs/policy.md).

pub mod diff;
