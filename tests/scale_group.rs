//! scale-group integration tests (written with the function).
