//! Listeners (public and admin), their hostile-HTTP limits, and the route table.

pub mod framing;
pub mod listener;
pub mod middleware;
pub mod router;
pub mod shutdown;
pub mod state;

pub use listener::{serve, ServerLimits};
pub use router::{admin_router, public_router};
pub use shutdown::Shutdown;
pub use state::AppState;
