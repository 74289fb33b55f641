//! PLACEHOLDER: replaced by the storage helper.

/// Postgres [`crate::BucketStorage`].
#[derive(Debug)]
pub struct PgStorage {}
