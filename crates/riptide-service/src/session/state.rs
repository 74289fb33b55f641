//! The sans-IO core of a sync stream. It is fed the bucket set of a checkpoint (with checksums
//! and the covered write checkpoint) and pages of bucket data, and answers with the lines to
//! send. It owns the per-bucket positions and knows which buckets still need data.
//!
//! Per checkpoint: a full `checkpoint` the first time, later a `checkpoint_diff` (or nothing if
//! nothing this client sees changed); then `data` lines for new and changed buckets, grouped by
//! priority (0 first) with `partial_checkpoint_complete` after every group but the last and
//! `checkpoint_complete` at the end — also when no bucket needs data.
//!
//! A group whose data was read from storage completes only after a [`CompactionCheck`]: when
//! storage compacted one of its buckets at a newer checkpoint than the one being served, the
//! data read may hold MOVE/CLEAR ops whose superseding ops are past it (docs/protocol.md §3.6).
//! The checkpoint is then abandoned without a completion line, like the official service does,
//! and the next one (storage already has it) continues from where the data stopped.

use std::collections::{HashMap, HashSet, VecDeque};

use riptide_protocol::{
    BucketChecksum, BucketRequest, Checkpoint, CheckpointComplete, CheckpointDiff, DataLine, OpId,
    OplogEntry, PartialCheckpointComplete, StreamDescription, StreamError, SubscriptionRef,
    SyncLine,
};
use riptide_storage::{BucketChunk, BucketState};

/// Target size of one `data` line; a page is split into several lines above it.
pub const DATA_LINE_BYTES: usize = 1024 * 1024;
/// Ops per storage page, and so at most per `data` line.
pub const DATA_PAGE_OPS: usize = 1000;
/// Default bytes of op data per storage page (`Limits::max_data_page_bytes`): a page of large
/// rows ends early, so a stream holds about this much of bucket data at a time.
pub const DATA_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// A bucket of the connection's bucket set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBucket {
    pub name: String,
    /// 0 (first) ..= 3.
    pub priority: u8,
    /// The subscriptions it serves: `{"default": i}` (index into the checkpoint's
    /// `streams`) or `{"sub": i}` (index into the request's subscriptions).
    pub subscriptions: Vec<SubscriptionRef>,
}

/// What the session knows at a storage checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointInput {
    pub checkpoint: OpId,
    pub buckets: Vec<SessionBucket>,
    /// Checksum and count per bucket; absent buckets have no ops (0/0).
    pub states: HashMap<String, BucketState>,
    /// The newest write checkpoint of this user/client covered by the checkpoint.
    pub write_checkpoint: Option<OpId>,
}

/// Before completing a group read from storage: the driver reads the buckets' compaction
/// points ([`riptide_storage::BucketStorage::compaction_points`]) and hands them to
/// [`SessionState::on_compaction_points`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionCheck {
    pub checkpoint: OpId,
    pub buckets: Vec<String>,
}

/// A page of bucket data the driver should read next: ops with
/// `after < op_id <= checkpoint` of each bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub checkpoint: OpId,
    pub buckets: Vec<(String, OpId)>,
    pub limit: usize,
    /// The page also ends once its ops hold this many bytes ([`riptide_storage::op_bytes`]).
    pub max_bytes: usize,
}

impl Fetch {
    /// The storage bounds of this page.
    pub fn page_limit(&self) -> riptide_storage::PageLimit {
        riptide_storage::PageLimit {
            ops: self.limit,
            bytes: self.max_bytes,
        }
    }
}

#[derive(Debug)]
struct Sent {
    buckets: HashMap<String, BucketChecksum>,
    write_checkpoint: Option<OpId>,
}

#[derive(Debug)]
struct Group {
    priority: u8,
    /// Buckets of this group that may still have data, in bucket-set order.
    remaining: Vec<String>,
    /// Every bucket of this group that needed data.
    all: Vec<String>,
    /// Some of its data was read from storage: it completes after a [`CompactionCheck`].
    from_storage: bool,
    /// All its data was sent; the compaction check is due.
    checking: bool,
}

#[derive(Debug)]
struct Pending {
    checkpoint: OpId,
    groups: VecDeque<Group>,
    ops_sent: u64,
}

/// The state of one sync stream.
#[derive(Debug)]
pub struct SessionState {
    streams: Vec<StreamDescription>,
    /// The streams' errors changed since the last full `checkpoint`: only a full one carries
    /// them, so the next checkpoint is sent whole.
    errors_changed: bool,
    positions: HashMap<String, OpId>,
    sent: Option<Sent>,
    pending: Option<Pending>,
    /// Buckets scheduled for data in a checkpoint that was abandoned before completing.
    incomplete: HashSet<String>,
    /// A checkpoint was abandoned because storage compacted its buckets at this checkpoint:
    /// the next one must be at least this and come from storage.
    invalidated: Option<OpId>,
    line_bytes: usize,
    page_bytes: usize,
    ops_sent_total: u64,
}

impl SessionState {
    /// `streams`: one entry per bucket definition; `requested`: the buckets and positions of the
    /// request body.
    pub fn new(streams: Vec<StreamDescription>, requested: &[BucketRequest]) -> Self {
        SessionState {
            streams,
            errors_changed: false,
            positions: requested
                .iter()
                .map(|b| (b.name.clone(), b.after))
                .collect(),
            sent: None,
            pending: None,
            incomplete: HashSet::new(),
            invalidated: None,
            line_bytes: DATA_LINE_BYTES,
            page_bytes: DATA_PAGE_BYTES,
            ops_sent_total: 0,
        }
    }

    /// Uses a different `data` line size limit (tests).
    pub fn with_line_bytes(mut self, bytes: usize) -> Self {
        self.line_bytes = bytes.max(1);
        self
    }

    /// Uses a different byte budget per storage page (`Limits::max_data_page_bytes`).
    pub fn with_page_bytes(mut self, bytes: usize) -> Self {
        self.page_bytes = bytes.max(1);
        self
    }

    /// Replaces the stream descriptions (the buckets were resolved again). When their
    /// per-subscription errors changed (a subscription went over a limit, or back under it),
    /// the next checkpoint is a full `checkpoint` line, the only one that carries `streams`;
    /// otherwise (e.g. new rules with other definitions) a `checkpoint_diff` follows as before.
    pub fn set_streams(&mut self, streams: Vec<StreamDescription>) {
        if self.sent.is_some() && stream_errors(&self.streams) != stream_errors(&streams) {
            self.errors_changed = true;
        }
        self.streams = streams;
    }

    /// One entry per bucket definition, as the official service describes classic rules.
    pub fn streams_for(definitions: &[(String, u8)]) -> Vec<StreamDescription> {
        definitions
            .iter()
            .map(|(name, _)| StreamDescription {
                name: name.clone(),
                is_default: true,
                errors: Vec::new(),
            })
            .collect()
    }

    /// Whether all data of the last checkpoint was sent.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none()
    }

    /// Ops sent so far for the checkpoint in progress.
    pub fn ops_sent_for_pending(&self) -> u64 {
        self.pending.as_ref().map_or(0, |p| p.ops_sent)
    }

    /// Ops sent on this stream.
    pub fn ops_sent_total(&self) -> u64 {
        self.ops_sent_total
    }

    /// The write checkpoint last reported to the client.
    pub fn reported_write_checkpoint(&self) -> Option<OpId> {
        self.sent.as_ref().and_then(|s| s.write_checkpoint)
    }

    /// Set when the last checkpoint was abandoned because storage compacted its buckets at a
    /// newer checkpoint: the next checkpoint must be at least this (and is read from storage).
    pub fn invalidated(&self) -> Option<OpId> {
        self.invalidated
    }

    /// The position of a bucket (ops up to it were sent or the client had them).
    pub fn position(&self, bucket: &str) -> Option<OpId> {
        self.positions.get(bucket).copied()
    }

    /// Starts a checkpoint. Returns the lines to send now: nothing if nothing this client sees
    /// changed; otherwise the `checkpoint` / `checkpoint_diff`, followed by
    /// `checkpoint_complete` when no bucket needs data. A checkpoint still in progress is
    /// abandoned; its unfinished buckets get data in this one.
    pub fn begin_checkpoint(&mut self, input: CheckpointInput) -> Vec<SyncLine> {
        // 1. A checkpoint still in progress is abandoned.
        self.abandon();
        self.invalidated = None;
        let CheckpointInput {
            checkpoint,
            buckets,
            states,
            write_checkpoint,
        } = input;
        // 2. The checksum of each bucket of the set (once each).
        let (current, in_set) = checksums(&buckets, &states);
        // 3. The checkpoint line, and the buckets that need data.
        let Some((line, needs_data)) =
            self.checkpoint_line(checkpoint, write_checkpoint, &current, &in_set)
        else {
            return Vec::new();
        };
        self.errors_changed = false;
        // 4. Positions: buckets the client may not have start at 0; removed buckets are
        //    forgotten.
        self.positions
            .retain(|name, _| in_set.contains(name.as_str()));
        self.incomplete
            .retain(|name| in_set.contains(name.as_str()));
        for (c, _) in &current {
            self.positions.entry(c.bucket.clone()).or_insert(OpId::ZERO);
        }
        // 5. Data is sent a priority group at a time.
        let groups = priority_groups(&needs_data);
        self.sent = Some(Sent {
            buckets: current
                .into_iter()
                .map(|(c, _)| (c.bucket.clone(), c))
                .collect(),
            write_checkpoint,
        });
        let mut out = vec![line];
        if groups.is_empty() {
            out.push(self.complete(checkpoint));
        } else {
            self.pending = Some(Pending {
                checkpoint,
                groups,
                ops_sent: 0,
            });
        }
        out
    }

    /// The `checkpoint` line (the first time) or `checkpoint_diff` for `current`, with the
    /// buckets that need data: all of them the first time, then the changed ones and those
    /// an abandoned checkpoint left incomplete. `None` if nothing this client sees changed.
    fn checkpoint_line<'b>(
        &self,
        checkpoint: OpId,
        write_checkpoint: Option<OpId>,
        current: &[(BucketChecksum, &'b SessionBucket)],
        in_set: &HashSet<&str>,
    ) -> Option<(SyncLine, Vec<&'b SessionBucket>)> {
        let Some(sent) = self.sent.as_ref().filter(|_| !self.errors_changed) else {
            let line = SyncLine::Checkpoint(Checkpoint {
                last_op_id: checkpoint,
                write_checkpoint,
                buckets: current.iter().map(|(c, _)| c.clone()).collect(),
                streams: self.streams.clone(),
            });
            return Some((line, current.iter().map(|(_, b)| *b).collect()));
        };
        let mut needs_data = Vec::new();
        let mut updated = Vec::new();
        for (c, b) in current {
            let changed = sent.buckets.get(&c.bucket) != Some(c);
            if changed {
                updated.push(c.clone());
            }
            if changed || self.incomplete.contains(&c.bucket) {
                needs_data.push(*b);
            }
        }
        let mut removed: Vec<String> = sent
            .buckets
            .keys()
            .filter(|name| !in_set.contains(name.as_str()))
            .cloned()
            .collect();
        removed.sort();
        if updated.is_empty()
            && removed.is_empty()
            && needs_data.is_empty()
            && sent.write_checkpoint == write_checkpoint
        {
            return None;
        }
        let line = SyncLine::CheckpointDiff(CheckpointDiff {
            last_op_id: checkpoint,
            write_checkpoint,
            updated_buckets: updated,
            removed_buckets: removed,
        });
        Some((line, needs_data))
    }

    /// Starts and finishes a checkpoint from ops already in memory (published on the
    /// checkpoint bus), without reading storage. `new_ops` must hold, per bucket in op-id
    /// order, every op with `base < op_id <= checkpoint`, where `base` is the checkpoint the
    /// last begun checkpoint's checksums are exact at (the caller tracks that). Checksums are
    /// the ones sent plus the new ops'; `data` lines are the new ops. Returns the lines to send
    /// (empty when nothing this client sees changed), or `None` when it cannot be done this way:
    /// a checkpoint is still in progress, none was sent yet, a bucket is new to the client, or
    /// there are more ops than one page — read storage then.
    pub fn checkpoint_from_ops(
        &mut self,
        checkpoint: OpId,
        buckets: Vec<SessionBucket>,
        write_checkpoint: Option<OpId>,
        new_ops: &HashMap<String, Vec<OplogEntry>>,
    ) -> Option<Vec<SyncLine>> {
        if self.pending.is_some() || self.invalidated.is_some() {
            return None;
        }
        let sent = self.sent.as_ref()?;
        let total: usize = new_ops.values().map(Vec::len).sum();
        if total >= DATA_PAGE_OPS {
            return None;
        }
        let mut states = HashMap::with_capacity(buckets.len());
        for b in &buckets {
            let before = sent.buckets.get(&b.name)?;
            let mut state = BucketState {
                checksum: before.checksum,
                count: before.count,
            };
            for op in new_ops.get(&b.name).into_iter().flatten() {
                if op.op_id <= checkpoint {
                    state.checksum += op.checksum;
                    state.count += 1;
                }
            }
            states.insert(b.name.clone(), state);
        }
        let mut out = self.begin_checkpoint(CheckpointInput {
            checkpoint,
            buckets,
            states,
            write_checkpoint,
        });
        // Each group is served whole by one page (fewer ops than a page), so this ends after
        // one round per priority group (at most four); anything left is read from storage.
        let mut rounds = 0;
        while rounds < 8
            && let Some(fetch) = self.next_fetch()
        {
            rounds += 1;
            let chunks = fetch
                .buckets
                .iter()
                .filter_map(|(name, after)| {
                    let ops: Vec<OplogEntry> = new_ops
                        .get(name)?
                        .iter()
                        .filter(|op| op.op_id > *after && op.op_id <= checkpoint)
                        .cloned()
                        .collect();
                    (!ops.is_empty()).then(|| BucketChunk {
                        bucket: name.clone(),
                        ops,
                        has_more: false,
                    })
                })
                .collect();
            out.extend(self.take_data(&fetch, chunks, false));
        }
        Some(out)
    }

    /// The next page of data to read, if the checkpoint in progress needs more.
    pub fn next_fetch(&self) -> Option<Fetch> {
        let pending = self.pending.as_ref()?;
        let group = pending.groups.front().filter(|g| !g.checking)?;
        Some(Fetch {
            checkpoint: pending.checkpoint,
            buckets: group
                .remaining
                .iter()
                .map(|b| {
                    (
                        b.clone(),
                        self.positions.get(b).copied().unwrap_or_default(),
                    )
                })
                .collect(),
            limit: DATA_PAGE_OPS,
            max_bytes: self.page_bytes,
        })
    }

    /// Takes the page read from storage for `fetch` and returns the `data` lines to send. When
    /// that finishes a group, its completion waits for [`Self::compaction_check`].
    pub fn on_data(&mut self, fetch: &Fetch, chunks: Vec<BucketChunk>) -> Vec<SyncLine> {
        self.take_data(fetch, chunks, true)
    }

    /// The check due before the group whose data was all sent may complete, if any.
    pub fn compaction_check(&self) -> Option<CompactionCheck> {
        let pending = self.pending.as_ref()?;
        let group = pending.groups.front().filter(|g| g.checking)?;
        Some(CompactionCheck {
            checkpoint: pending.checkpoint,
            buckets: group.all.clone(),
        })
    }

    /// Takes the compaction points of `check`'s buckets (op id of each one's last compaction;
    /// absent: never compacted). Returns the group's `partial_checkpoint_complete` /
    /// `checkpoint_complete`; or nothing when a bucket was compacted at a newer checkpoint: then
    /// the checkpoint is abandoned ([`Self::invalidated`]) and its unfinished buckets get their
    /// data in the next one, from where they stopped.
    pub fn on_compaction_points(
        &mut self,
        check: &CompactionCheck,
        points: &HashMap<String, OpId>,
    ) -> Vec<SyncLine> {
        if self.compaction_check().as_ref() != Some(check) {
            return Vec::new();
        }
        let newest = check
            .buckets
            .iter()
            .filter_map(|b| points.get(b).copied())
            .max()
            .filter(|p| *p > check.checkpoint);
        if let Some(point) = newest {
            self.abandon();
            self.invalidated = Some(point);
            return Vec::new();
        }
        self.finish_group().into_iter().collect()
    }

    /// Forgets the checkpoint in progress, if any: its buckets are owed data.
    fn abandon(&mut self) {
        if let Some(p) = self.pending.take() {
            for g in p.groups {
                self.incomplete.extend(g.all);
            }
        }
    }

    fn take_data(
        &mut self,
        fetch: &Fetch,
        chunks: Vec<BucketChunk>,
        from_storage: bool,
    ) -> Vec<SyncLine> {
        let mut out = Vec::new();
        let Some(pending) = self.pending.as_mut() else {
            return out;
        };
        if pending.checkpoint != fetch.checkpoint {
            return out;
        }
        let Some(group) = pending.groups.front_mut().filter(|g| !g.checking) else {
            return out;
        };
        group.from_storage |= from_storage;
        let total: usize = chunks.iter().map(|c| c.ops.len()).sum();
        let page_bytes: usize = chunks
            .iter()
            .flat_map(|c| &c.ops)
            .map(riptide_storage::op_bytes)
            .sum();
        let mut still_more: HashSet<String> = HashSet::new();
        let mut returned: HashSet<String> = HashSet::new();
        for chunk in chunks {
            if !group.remaining.contains(&chunk.bucket) {
                continue;
            }
            let after = self
                .positions
                .get(&chunk.bucket)
                .copied()
                .unwrap_or_default();
            // Never resend ops the client already has (defensive against storage paging).
            let ops: Vec<OplogEntry> = chunk
                .ops
                .into_iter()
                .filter(|op| op.op_id > after && op.op_id <= pending.checkpoint)
                .collect();
            returned.insert(chunk.bucket.clone());
            if chunk.has_more && !ops.is_empty() {
                still_more.insert(chunk.bucket.clone());
            }
            let n = ops.len() as u64;
            let lines = split_ops(ops, self.line_bytes);
            let count = lines.len();
            let mut position = after;
            for (i, ops) in lines.into_iter().enumerate() {
                let next_after = ops.last().map_or(position, |op| op.op_id);
                out.push(SyncLine::Data(DataLine {
                    bucket: chunk.bucket.clone(),
                    after: position,
                    has_more: i + 1 < count || still_more.contains(&chunk.bucket),
                    data: ops,
                    next_after,
                }));
                position = next_after;
            }
            self.positions.insert(chunk.bucket, position);
            pending.ops_sent += n;
            self.ops_sent_total += n;
        }
        // Buckets that came back without more data are done; a bucket missing from a full page
        // (by ops or by bytes) may have been cut off by the page limit, so it is read again.
        let page_full = total > 0 && (total >= fetch.limit || page_bytes >= fetch.max_bytes);
        group
            .remaining
            .retain(|b| still_more.contains(b) || (page_full && !returned.contains(b)));
        if !group.remaining.is_empty() {
            return out;
        }
        if group.from_storage {
            group.checking = true;
            return out;
        }
        out.extend(self.finish_group());
        out
    }

    /// Completes the first group of the checkpoint in progress: `partial_checkpoint_complete`,
    /// or `checkpoint_complete` for the last group.
    fn finish_group(&mut self) -> Option<SyncLine> {
        let pending = self.pending.as_mut()?;
        let checkpoint = pending.checkpoint;
        let done = pending.groups.pop_front()?;
        if pending.groups.is_empty() {
            return Some(self.complete(checkpoint));
        }
        for b in &done.all {
            self.positions.insert(b.clone(), checkpoint);
            self.incomplete.remove(b);
        }
        Some(SyncLine::PartialCheckpointComplete(
            PartialCheckpointComplete {
                last_op_id: checkpoint,
                priority: done.priority,
            },
        ))
    }

    /// Marks the checkpoint complete: every bucket of it is now at `checkpoint`.
    fn complete(&mut self, checkpoint: OpId) -> SyncLine {
        self.pending = None;
        self.incomplete.clear();
        for pos in self.positions.values_mut() {
            *pos = checkpoint;
        }
        SyncLine::CheckpointComplete(CheckpointComplete {
            last_op_id: checkpoint,
        })
    }
}

/// The streams that have errors, with them.
fn stream_errors(streams: &[StreamDescription]) -> Vec<(&str, &[StreamError])> {
    streams
        .iter()
        .filter(|s| !s.errors.is_empty())
        .map(|s| (s.name.as_str(), s.errors.as_slice()))
        .collect()
}

/// Splits a page of ops into `data` line payloads of at most about `max_bytes` each (at least
/// one op per line).
fn split_ops(ops: Vec<OplogEntry>, max_bytes: usize) -> Vec<Vec<OplogEntry>> {
    let mut lines = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0usize;
    for op in ops {
        let op_size = estimated_size(&op);
        if !cur.is_empty() && size + op_size > max_bytes {
            lines.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += op_size;
        cur.push(op);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

fn estimated_size(op: &OplogEntry) -> usize {
    // Field names, quotes, ids and checksum: about 120 bytes; JSON escaping of `data` adds a
    // little more, counted generously.
    let data = op.data.as_ref().map_or(0, |d| d.len() + d.len() / 8);
    120 + data
        + op.object_type.as_ref().map_or(0, String::len)
        + op.object_id.as_ref().map_or(0, String::len)
        + op.subkey.as_ref().map_or(0, String::len)
}

/// Each bucket of `buckets` (the first of duplicate names) with its checksum and count from
/// `states` (zero when absent), and the set of their names.
fn checksums<'b>(
    buckets: &'b [SessionBucket],
    states: &HashMap<String, BucketState>,
) -> (Vec<(BucketChecksum, &'b SessionBucket)>, HashSet<&'b str>) {
    let mut seen = HashSet::with_capacity(buckets.len());
    let mut current = Vec::with_capacity(buckets.len());
    for b in buckets {
        if !seen.insert(b.name.as_str()) {
            continue;
        }
        let state = states.get(&b.name).copied().unwrap_or_default();
        current.push((
            BucketChecksum {
                bucket: b.name.clone(),
                checksum: state.checksum,
                count: state.count,
                priority: b.priority,
                subscriptions: b.subscriptions.clone(),
            },
            b,
        ));
    }
    (current, seen)
}

/// The buckets that need data, grouped by priority (lowest first), each group in bucket-set
/// order.
fn priority_groups(needs_data: &[&SessionBucket]) -> VecDeque<Group> {
    let mut priorities: Vec<u8> = needs_data.iter().map(|b| b.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    priorities
        .into_iter()
        .map(|priority| {
            let all: Vec<String> = needs_data
                .iter()
                .filter(|b| b.priority == priority)
                .map(|b| b.name.clone())
                .collect();
            Group {
                priority,
                remaining: all.clone(),
                all,
                from_storage: false,
                checking: false,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
