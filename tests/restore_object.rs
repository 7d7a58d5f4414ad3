//! restore-object integration tests (written with the function).
