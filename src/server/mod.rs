//! Listeners (public and admin), their hostile-HTTP limits, TLS on the public listener, and the
//! route table.

pub mod first_byte;
pub mod framing;
pub mod listener;
pub mod middleware;
pub mod router;
pub mod shutdown;
pub mod state;
pub mod tls;

pub use listener::{serve, serve_with_tls, ListenerStats, ServerLimits};
pub use router::{admin_router, public_router};
pub use shutdown::Shutdown;
pub use state::AppState;
