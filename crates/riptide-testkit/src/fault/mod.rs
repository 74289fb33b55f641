//! Tools of the fault-injection suite (the suite itself runs the `riptide` binary:
//! `crates/riptide-cli/tests/faults.rs`; see `docs/architecture.md`, "Failure modes"):
//!
//! - [`PgServer`]: a private Postgres server a test may kill and restart (source and storage
//!   each get their own, so either can fail alone);
//! - [`TcpProxy`]: a loopback TCP proxy between the service and Postgres that cuts, refuses,
//!   blackholes or slows connections on command;
//! - [`ServiceProcess`]: a `riptide serve` process killed with SIGKILL and started again, with
//!   failpoints (`FAILPOINTS`);
//! - [`Replica`] and [`Oracle`]: a client's local state kept as the official client keeps it,
//!   and the sync rules as plain SQL it must equal after every fault;
//! - [`FaultClient`]: a client that reconnects through faults and converges on request.

mod client;
mod proxy;
mod replica;
mod server;
mod service;

pub use client::{ConvergeError, FaultClient};
pub use proxy::{ProxyMode, TcpProxy};
pub use replica::{Applied, Oracle, Replica, ReplicaError, Tables, normalise};
pub use server::PgServer;
pub use service::ServiceProcess;
