//! replay-transactions integration tests (written with the function).
