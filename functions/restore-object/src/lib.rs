//! restore-object: not implemented yet (see its issue). Only the crate skeleton exists so the workspace
//! builds while the function is written.

pub const FUNCTION: &str = "restore-object";
