//! Initial sync with a raw protocol reader: the bulk-insert ops downloaded from scratch up to
//! `checkpoint_complete`, per transport and encoding, best of `--repeat` runs (ops/s and bytes
//! on the wire, compressed where it is).

use std::time::Instant;

use anyhow::{Context, Result};
use riptide_testkit::{Encoding, Format, Transport};

use super::Bench;
use crate::checkpoint::{read_until_complete, request_body};
use crate::report::Row;

/// Every transport measured, in the table's order.
const TRANSPORTS: [Transport; 7] = [
    Transport::NDJSON,
    http(Format::Ndjson, Encoding::Gzip),
    http(Format::Ndjson, Encoding::Zstd),
    http(Format::Bson, Encoding::Identity),
    http(Format::Bson, Encoding::Gzip),
    http(Format::Bson, Encoding::Zstd),
    Transport::RSocket,
];

const fn http(format: Format, encoding: Encoding) -> Transport {
    Transport::Http { format, encoding }
}

pub async fn run(bench: &Bench<'_>) -> Result<Vec<Row>> {
    let client = bench.client("none");
    let body = request_body();
    let mut rows = Vec::with_capacity(TRANSPORTS.len());
    for transport in TRANSPORTS {
        let mut best: Option<(f64, u64, u64)> = None;
        for _ in 0..bench.sizes.repeat {
            let started = Instant::now();
            let mut stream = client.open(transport, &body).await?;
            let (ops, _) = read_until_complete(&mut stream, Some(bench.sizes.rows)).await?;
            let secs = started.elapsed().as_secs_f64();
            let wire = stream.wire_bytes();
            drop(stream);
            if best.is_none_or(|(s, _, _)| secs < s) {
                best = Some((secs, ops, wire));
            }
        }
        let (secs, ops, wire) = best.context("at least one run")?;
        rows.push(Row {
            scenario: format!("initial sync, raw reader, {}", label(transport)),
            amount: format!("{ops} ops"),
            seconds: secs,
            rate: format!("{:.0} ops/s", ops as f64 / secs),
            note: format!("{:.1} MB on the wire", wire as f64 / 1e6),
        });
    }
    Ok(rows)
}

/// `NDJSON identity`, `BSON zstd`, …, `RSocket/WebSocket (BSON)`.
fn label(transport: Transport) -> String {
    match transport {
        Transport::Http { format, encoding } => {
            let format = match format {
                Format::Ndjson => "NDJSON",
                Format::Bson => "BSON",
            };
            format!("{format} {}", encoding.as_str())
        }
        Transport::RSocket => "RSocket/WebSocket (BSON)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_format_and_encoding() {
        let labels: Vec<String> = TRANSPORTS.into_iter().map(label).collect();
        assert_eq!(
            labels,
            [
                "NDJSON identity",
                "NDJSON gzip",
                "NDJSON zstd",
                "BSON identity",
                "BSON gzip",
                "BSON zstd",
                "RSocket/WebSocket (BSON)",
            ]
        );
    }
}
