//! Sync stream sessions: the sans-IO [`state`] machine, the tokio [`driver`] that feeds it from
//! storage and the checkpoint bus (and from the ops the bus carries, tracked by [`follow`]), the
//! bucket set a request resolves to at one checkpoint (`resolve.rs`), the [`keepalive`] token
//! lines, the [`pace`] of checkpoints, and line [`framing`].

pub mod driver;
pub mod follow;
pub mod framing;
pub mod keepalive;
pub mod pace;
mod resolve;
pub mod state;
pub mod wake;
