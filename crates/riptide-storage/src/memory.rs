//! PLACEHOLDER: replaced by the storage helper.

/// In-memory [`crate::BucketStorage`] for unit tests.
#[derive(Debug, Default)]
pub struct MemoryStorage {}
