//! One HTTP turn. Placeholder.
use crate::conn::{Conn, Next};
use crate::server::Shared;
/// Runs one HTTP turn.
pub fn turn(conn: Conn, _shared: &Shared) -> Next {
    conn.close_gracefully()
}
