//! What storage commits announce to the other processes on the same storage (`NOTIFY` on
//! [`crate::CHECKPOINT_CHANNEL`]), and what a listener hands on ([`NotificationSink`]).
//!
//! Three kinds, each a JSON object with `"v": 1`, `"kind"` and the writer's `"node"` (a
//! [`crate::PgStorage::node_id`], so a listener skips what its own process already announced
//! in process):
//!
//! - `checkpoint`: a replication commit — deployment, `previous` op id, the checkpoint's op id
//!   and LSN, and the changed buckets and parameter-lookup keys (base64) when they fit. A list
//!   that does not fit is left out (`null`, "too many"): the lookups are kept in preference,
//!   since the buckets can be read back from storage (`bucket_state.last_op_id`, see
//!   [`crate::PgStorage::changed_buckets_since`]) and the lookups cannot; an event whose lookups
//!   were left out says so with [`crate::CheckpointEvent::all_lookups_changed`].
//! - `write_checkpoint`: user and client id and the write checkpoint's id, so the node holding
//!   that stream looks it up.
//! - `deployment`: a deployment's new state (created, activated, terminated), so API nodes
//!   switch rules.
//!
//! Every payload ends with `"at_us"`: the storage database's `clock_timestamp()` in
//! microseconds since the Unix epoch, taken in the committing transaction just before its
//! `COMMIT` (appended by the SQL that sends it), from which a listener measures the lag.
//!
//! Postgres refuses payloads of 8,000 bytes or more; payloads stay under
//! [`PAYLOAD_MAX`]. Parsing treats the payload as input from another process: bounded, typed
//! errors, never a panic.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use riptide_protocol::{Lsn, OpId};
use serde::{Deserialize, Serialize};

use crate::{CheckpointEvent, DeploymentId, DeploymentState, StorageCheckpoint};

/// Largest payload sent or accepted, in bytes (Postgres' limit is 8,000).
pub const PAYLOAD_MAX: usize = 7_990;
/// Bytes kept free for the `,"at_us":…}` the SQL appends.
const AT_US_RESERVE: usize = 32;
/// Payload version.
const VERSION: u32 = 1;

/// What a notification said.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The writer's node id.
    pub node: String,
    /// The database clock when the writer committed (`None` when absent).
    pub sent_at: Option<SystemTime>,
    pub body: NoticeBody,
}

/// The kinds of [`Notice`].
#[derive(Debug, Clone, PartialEq)]
pub enum NoticeBody {
    Checkpoint(CheckpointNotice),
    WriteCheckpoint {
        user_id: String,
        client_id: String,
        id: OpId,
    },
    Deployment {
        deployment: DeploymentId,
        state: DeploymentState,
    },
}

/// A replication commit as announced across processes.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointNotice {
    pub deployment: DeploymentId,
    pub previous: OpId,
    pub checkpoint: StorageCheckpoint,
    /// `None`: too many to announce; read them from storage.
    pub changed_buckets: Option<Vec<String>>,
    /// `None`: too many to announce; any lookup may have changed.
    pub changed_lookups: Option<Vec<Vec<u8>>>,
}

/// Why a payload was not understood.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("notification payload of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("notification payload is not valid")]
    Json(#[source] serde_json::Error),
    #[error("notification payload version {0} is not understood")]
    Version(u32),
    #[error("notification payload has an invalid {0}")]
    Field(&'static str),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Checkpoint {
        v: u32,
        node: String,
        deployment: i64,
        previous: i64,
        op_id: i64,
        lsn: String,
        buckets: Option<Vec<String>>,
        lookups: Option<Vec<String>>,
        #[serde(default, skip_serializing)]
        at_us: Option<i64>,
    },
    WriteCheckpoint {
        v: u32,
        node: String,
        user_id: String,
        client_id: String,
        id: i64,
        #[serde(default, skip_serializing)]
        at_us: Option<i64>,
    },
    Deployment {
        v: u32,
        node: String,
        deployment: i64,
        state: String,
        #[serde(default, skip_serializing)]
        at_us: Option<i64>,
    },
}

/// A payload without its closing brace, ready for the SQL to append `"at_us"` (see
/// [`NOTIFY_SQL`]); `None` when it would not fit.
fn open_payload(wire: &Wire) -> Option<String> {
    let mut json = serde_json::to_string(wire).ok()?;
    if json.len() + AT_US_RESERVE > PAYLOAD_MAX || json.pop() != Some('}') {
        return None;
    }
    json.push_str(r#","at_us":"#);
    Some(json)
}

/// Sends `$2` (from one of the `*_payload` functions) on channel `$1`, completed with the
/// database clock.
pub(crate) const NOTIFY_SQL: &str = "SELECT pg_notify($1, $2 || \
     (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text || '}')";

/// The payload of a commit's event: with both lists when they fit, else with the lookups
/// only, else with neither.
pub(crate) fn checkpoint_payload(node: &str, event: &CheckpointEvent) -> String {
    let wire = |buckets: bool, lookups: bool| Wire::Checkpoint {
        v: VERSION,
        node: node.to_owned(),
        deployment: event.deployment,
        previous: event.previous.0,
        op_id: event.checkpoint.op_id.0,
        lsn: event.checkpoint.lsn.to_string(),
        buckets: buckets.then(|| event.changed_buckets.clone()),
        lookups: lookups.then(|| {
            event
                .changed_lookups
                .iter()
                .map(|l| B64.encode(l))
                .collect()
        }),
        at_us: None,
    };
    // Lists far over the limit are not serialized only to be measured.
    let bucket_bytes: usize = event.changed_buckets.iter().map(|b| b.len() + 3).sum();
    let lookup_bytes: usize = event
        .changed_lookups
        .iter()
        .map(|l| l.len() * 4 / 3 + 4)
        .sum();
    let fits = |n: usize| n < PAYLOAD_MAX;
    fits(bucket_bytes + lookup_bytes)
        .then(|| open_payload(&wire(true, true)))
        .flatten()
        .or_else(|| fits(lookup_bytes).then(|| open_payload(&wire(false, true)))?)
        .or_else(|| open_payload(&wire(false, false)))
        // Ids and an LSN alone always fit; the node id is ours (a UUID).
        .unwrap_or_default()
}

/// The payload of a new write checkpoint; `None` when the ids are too long to announce (the
/// stream then finds it at its next checkpoint read from storage).
pub(crate) fn write_checkpoint_payload(
    node: &str,
    user_id: &str,
    client_id: &str,
    id: OpId,
) -> Option<String> {
    open_payload(&Wire::WriteCheckpoint {
        v: VERSION,
        node: node.to_owned(),
        user_id: user_id.to_owned(),
        client_id: client_id.to_owned(),
        id: id.0,
        at_us: None,
    })
}

/// The payload of a deployment's new state.
pub(crate) fn deployment_payload(
    node: &str,
    deployment: DeploymentId,
    state: DeploymentState,
) -> String {
    open_payload(&Wire::Deployment {
        v: VERSION,
        node: node.to_owned(),
        deployment,
        state: state.as_str().to_owned(),
        at_us: None,
    })
    .unwrap_or_default()
}

impl Notice {
    /// The whole payload of this notice (`"at_us"` from `sent_at`), for tests and the fuzz
    /// target's round trip (`--cfg fuzzing`); the service sends the `*_payload` forms, which
    /// the SQL completes with the database clock.
    #[cfg(any(test, fuzzing))]
    pub fn to_payload(&self) -> String {
        let node = self.node.clone();
        let wire = match &self.body {
            NoticeBody::Checkpoint(c) => Wire::Checkpoint {
                v: VERSION,
                node,
                deployment: c.deployment,
                previous: c.previous.0,
                op_id: c.checkpoint.op_id.0,
                lsn: c.checkpoint.lsn.to_string(),
                buckets: c.changed_buckets.clone(),
                lookups: c
                    .changed_lookups
                    .as_ref()
                    .map(|l| l.iter().map(|k| B64.encode(k)).collect()),
                at_us: None,
            },
            NoticeBody::WriteCheckpoint {
                user_id,
                client_id,
                id,
            } => Wire::WriteCheckpoint {
                v: VERSION,
                node,
                user_id: user_id.clone(),
                client_id: client_id.clone(),
                id: id.0,
                at_us: None,
            },
            NoticeBody::Deployment { deployment, state } => Wire::Deployment {
                v: VERSION,
                node,
                deployment: *deployment,
                state: state.as_str().to_owned(),
                at_us: None,
            },
        };
        let mut json = serde_json::to_string(&wire).unwrap_or_default();
        if let Some(at) = self.sent_at {
            let us = at
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros());
            json.pop();
            json.push_str(&format!(r#","at_us":{us}}}"#));
        }
        json
    }
}

impl Notice {
    /// Parses a payload from another process.
    pub fn parse(payload: &str) -> Result<Notice, NotificationError> {
        if payload.len() > PAYLOAD_MAX + AT_US_RESERVE {
            return Err(NotificationError::TooLarge(payload.len()));
        }
        let wire: Wire = serde_json::from_str(payload).map_err(NotificationError::Json)?;
        let (v, node, at_us, body) = match wire {
            Wire::Checkpoint {
                v,
                node,
                deployment,
                previous,
                op_id,
                lsn,
                buckets,
                lookups,
                at_us,
            } => {
                if previous < 0 || op_id < previous {
                    return Err(NotificationError::Field("op id"));
                }
                let lsn: Lsn = lsn.parse().map_err(|_| NotificationError::Field("lsn"))?;
                let lookups = match lookups {
                    Some(l) => Some(
                        l.iter()
                            .map(|s| B64.decode(s))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|_| NotificationError::Field("lookup"))?,
                    ),
                    None => None,
                };
                let body = NoticeBody::Checkpoint(CheckpointNotice {
                    deployment,
                    previous: OpId(previous),
                    checkpoint: StorageCheckpoint {
                        op_id: OpId(op_id),
                        lsn,
                    },
                    changed_buckets: buckets,
                    changed_lookups: lookups,
                });
                (v, node, at_us, body)
            }
            Wire::WriteCheckpoint {
                v,
                node,
                user_id,
                client_id,
                id,
                at_us,
            } => (
                v,
                node,
                at_us,
                NoticeBody::WriteCheckpoint {
                    user_id,
                    client_id,
                    id: OpId(id),
                },
            ),
            Wire::Deployment {
                v,
                node,
                deployment,
                state,
                at_us,
            } => {
                let state = DeploymentState::parse(&state)
                    .ok_or(NotificationError::Field("deployment state"))?;
                (v, node, at_us, NoticeBody::Deployment { deployment, state })
            }
        };
        if v != VERSION {
            return Err(NotificationError::Version(v));
        }
        let sent_at = at_us
            .and_then(|us| u64::try_from(us).ok())
            .and_then(|us| SystemTime::UNIX_EPOCH.checked_add(Duration::from_micros(us)));
        Ok(Notice {
            node,
            sent_at,
            body,
        })
    }
}

/// Where a [`crate::CheckpointListener`] delivers what other processes committed: the node's
/// checkpoint bus, write-checkpoint notices and deployment switch. Called from the listener's
/// task, in commit order; implementations must not block.
pub trait NotificationSink: Send + Sync {
    /// A commit of another process (with its ops when the listener read a small one, else
    /// `ops` is `None`), or, after a reconnect, one event covering every commit since the last
    /// one delivered.
    fn checkpoint(&self, event: CheckpointEvent, sent_at: Option<SystemTime>);
    /// Another process created a write checkpoint.
    fn write_checkpoint(
        &self,
        user_id: String,
        client_id: String,
        id: OpId,
        sent_at: Option<SystemTime>,
    );
    /// A deployment changed state in another process (also sent after a reconnect when the
    /// active deployment is not the one last known).
    fn deployment(
        &self,
        deployment: DeploymentId,
        state: DeploymentState,
        sent_at: Option<SystemTime>,
    );
    /// A payload was not understood (logged by the listener).
    fn bad_notification(&self) {}
    /// The listening connection was lost; the listener reconnects and catches up.
    fn reconnecting(&self) {}
    /// The listener fell too far behind and dropped notifications; it catches up from storage.
    fn overflowed(&self) {}
    /// The listener is listening (again) and has caught up: every later commit is delivered.
    fn listening(&self) {}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// What the SQL appends.
    fn sent(open: String, at_us: i64) -> String {
        format!("{open}{at_us}}}")
    }

    fn event(buckets: usize, lookups: usize) -> CheckpointEvent {
        CheckpointEvent {
            deployment: 3,
            checkpoint: StorageCheckpoint {
                op_id: OpId(20),
                lsn: Lsn(0x1_0000_0010),
            },
            previous: OpId(10),
            changed_buckets: (0..buckets).map(|i| format!("3#b[\"{i}\"]")).collect(),
            changed_lookups: (0..lookups).map(|i| vec![1, 2, i as u8]).collect(),
            all_lookups_changed: false,
            ops: None,
        }
    }

    #[test]
    fn a_checkpoint_round_trips_with_its_lists() {
        let payload = sent(
            checkpoint_payload("n1", &event(2, 2)),
            1_700_000_000_000_000,
        );
        let notice = Notice::parse(&payload).unwrap();
        assert_eq!(notice.node, "n1");
        assert_eq!(
            notice.sent_at,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let NoticeBody::Checkpoint(c) = notice.body else {
            panic!("not a checkpoint");
        };
        assert_eq!(c.previous, OpId(10));
        assert_eq!(c.checkpoint.op_id, OpId(20));
        assert_eq!(c.checkpoint.lsn, Lsn(0x1_0000_0010));
        assert_eq!(c.changed_buckets.unwrap(), event(2, 2).changed_buckets);
        assert_eq!(c.changed_lookups.unwrap(), event(2, 2).changed_lookups);
    }

    /// The test encoder (the fuzz target's round trip) writes what the senders write.
    #[test]
    fn every_kind_encodes_to_a_payload_that_parses_back() {
        let at = 1_700_000_000_000_123;
        for payload in [
            sent(checkpoint_payload("n1", &event(2, 2)), at),
            sent(checkpoint_payload("n1", &event(1_000, 1_000)), at),
            sent(
                write_checkpoint_payload("n2", "u", "c", OpId(7)).unwrap(),
                at,
            ),
            sent(deployment_payload("n3", 4, DeploymentState::Active), at),
        ] {
            let notice = Notice::parse(&payload).unwrap();
            assert_eq!(notice.to_payload(), payload);
            assert_eq!(Notice::parse(&notice.to_payload()).unwrap(), notice);
        }
    }

    #[test]
    fn lists_that_do_not_fit_are_left_out_buckets_first() {
        let open = checkpoint_payload("n1", &event(1_000, 2));
        assert!(open.len() + AT_US_RESERVE <= PAYLOAD_MAX);
        let NoticeBody::Checkpoint(c) = Notice::parse(&sent(open, 1)).unwrap().body else {
            panic!("not a checkpoint");
        };
        assert_eq!(c.changed_buckets, None);
        assert_eq!(c.changed_lookups.unwrap().len(), 2);

        let open = checkpoint_payload("n1", &event(1_000, 5_000));
        let NoticeBody::Checkpoint(c) = Notice::parse(&sent(open, 1)).unwrap().body else {
            panic!("not a checkpoint");
        };
        assert_eq!((c.changed_buckets, c.changed_lookups), (None, None));
    }

    #[test]
    fn write_checkpoints_and_deployments_round_trip() {
        let open = write_checkpoint_payload("n", "u1", "c1", OpId(7)).unwrap();
        assert_eq!(
            Notice::parse(&sent(open, 5)).unwrap().body,
            NoticeBody::WriteCheckpoint {
                user_id: "u1".into(),
                client_id: "c1".into(),
                id: OpId(7)
            }
        );
        assert_eq!(
            write_checkpoint_payload("n", &"u".repeat(8_000), "c", OpId(1)),
            None
        );
        let open = deployment_payload("n", 4, DeploymentState::Active);
        assert_eq!(
            Notice::parse(&sent(open, 5)).unwrap().body,
            NoticeBody::Deployment {
                deployment: 4,
                state: DeploymentState::Active
            }
        );
    }

    #[test]
    fn bad_payloads_are_errors() {
        for bad in [
            "",
            "{",
            "[]",
            r#"{"kind":"checkpoint"}"#,
            r#"{"kind":"nope","v":1,"node":"n"}"#,
            r#"{"kind":"deployment","v":2,"node":"n","deployment":1,"state":"ACTIVE"}"#,
            r#"{"kind":"deployment","v":1,"node":"n","deployment":1,"state":"GONE"}"#,
            r#"{"kind":"checkpoint","v":1,"node":"n","deployment":1,"previous":5,"op_id":4,"lsn":"0/1","buckets":[],"lookups":[]}"#,
            r#"{"kind":"checkpoint","v":1,"node":"n","deployment":1,"previous":1,"op_id":4,"lsn":"x","buckets":[],"lookups":[]}"#,
            r#"{"kind":"checkpoint","v":1,"node":"n","deployment":1,"previous":1,"op_id":4,"lsn":"0/1","buckets":[],"lookups":["!!"]}"#,
        ] {
            assert!(Notice::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            Notice::parse(&" ".repeat(9_000)),
            Err(NotificationError::TooLarge(_))
        ));
        // A clock before the epoch is no time at all, not a panic.
        let open = deployment_payload("n", 4, DeploymentState::Stop);
        assert_eq!(Notice::parse(&sent(open, -5)).unwrap().sent_at, None);
    }
}
