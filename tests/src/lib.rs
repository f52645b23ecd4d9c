//! Shared fixtures for the cross-crate test suite in `tests/`.
