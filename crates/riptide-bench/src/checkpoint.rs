//! Reading a sync stream up to a complete checkpoint, counting the ops on the way.

use std::time::Duration;

use anyhow::{Context, Result};
use riptide_testkit::SyncStream;
use serde_json::{Value, json};

/// The longest wait for the next bytes of a stream before a scenario gives up on it.
pub const LINE_TIMEOUT: Duration = Duration::from_secs(120);

/// The sync request every bench stream sends: rows as JSON strings, as the official clients
/// ask for them.
pub fn request_body() -> Value {
    json!({"raw_data": true, "client_id": "bench"})
}

/// The next line; an error if the stream ends or stalls.
pub async fn next_line(s: &mut SyncStream) -> Result<Value> {
    s.try_next_line(LINE_TIMEOUT).await?.context("stream ended")
}

/// Reads lines up to a `checkpoint_complete` (whose checkpoint has at least `min_count` ops in
/// total, when given). Returns the ops and the wire bytes read so far.
pub async fn read_until_complete(s: &mut SyncStream, min_count: Option<i64>) -> Result<(u64, u64)> {
    let mut ops = 0u64;
    let mut count: i64 = 0;
    loop {
        let v = next_line(s).await?;
        if let Some(d) = v.pointer("/data/data").and_then(Value::as_array) {
            ops += d.len() as u64;
        }
        for key in ["/checkpoint/buckets", "/checkpoint_diff/updated_buckets"] {
            if let Some(bs) = v.pointer(key).and_then(Value::as_array) {
                count = bs
                    .iter()
                    .filter_map(|b| b["count"].as_i64())
                    .sum::<i64>()
                    .max(count);
            }
        }
        if v.get("checkpoint_complete").is_some() && min_count.is_none_or(|m| count >= m) {
            return Ok((ops, s.wire_bytes()));
        }
    }
}

/// The ops in the first `checkpoint` line's buckets.
pub async fn first_checkpoint_count(s: &mut SyncStream) -> Result<i64> {
    loop {
        let line = next_line(s).await?;
        if let Some(buckets) = line
            .pointer("/checkpoint/buckets")
            .and_then(Value::as_array)
        {
            return Ok(buckets
                .iter()
                .filter_map(|b| b["count"].as_i64())
                .sum::<i64>());
        }
    }
}
