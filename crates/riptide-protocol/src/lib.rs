//! The PowerSync wire protocol as Riptide speaks it: sync request and line types, op ids, LSNs,
//! checksums, NDJSON framing and PowerSync error codes. No IO lives here; the service, the test
//! client and the benchmarks all share these types.
//!
//! The contract as Riptide implements it is `docs/protocol.md` (with where it differs from the
//! official service). The points the official client is strict about are encoded in the
//! types: op ids are decimal strings ([`OpId`]), op `data` is a JSON string, bucket checksums are
//! wrapping u32 sums ([`Checksum`]).

mod checksum;
mod error;
mod lines;
mod lsn;
pub mod nesting;
mod op_id;
mod request;
pub mod rsocket;

pub use checksum::Checksum;
pub use error::{ErrorBody, ErrorCode, ErrorDetails};
pub use lines::{
    BucketChecksum, Checkpoint, CheckpointComplete, CheckpointDiff, DataLine, ErrorSubscription,
    OpType, OplogEntry, PartialCheckpointComplete, StreamDescription, StreamError, SubscriptionRef,
    SyncLine,
};
pub use lsn::{Lsn, LsnParseError};
pub use op_id::{OpId, OpIdParseError};
pub use request::{BucketRequest, StreamSubscription, StreamingSyncRequest, StreamsRequest};
