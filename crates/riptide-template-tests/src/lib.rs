//! Integration tests of the app templates live in `tests/`.
