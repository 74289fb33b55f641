//! The HTTP transport's body as lines: decompressed as it arrives (push-style, so a line is
//! seen as soon as its last byte is in) into one buffer, and cut there into NDJSON lines or BSON
//! documents, each parsed where it lies. The bytes of lines already returned are dropped once
//! per chunk received rather than once per line, and a partial line is searched for its end
//! only in the bytes that arrived since the last search.

use std::io::Write;

use serde_json::Value;

use super::{Encoding, Format, SyncClientError};

/// Decompresses into the buffer the [`Framer`] reads lines from (the decoder owns it, so no
/// bytes are copied between the two).
pub(super) enum Decoder {
    Identity(Vec<u8>),
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Zstd(Box<zstd::stream::write::Decoder<'static, Vec<u8>>>),
}

impl Decoder {
    pub(super) fn new(encoding: Encoding) -> Result<Decoder, SyncClientError> {
        Ok(match encoding {
            Encoding::Identity => Decoder::Identity(Vec::new()),
            Encoding::Gzip => Decoder::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            Encoding::Zstd => Decoder::Zstd(Box::new(
                zstd::stream::write::Decoder::new(Vec::new())
                    .map_err(SyncClientError::Decompress)?,
            )),
        })
    }

    /// Appends what `chunk` decodes to (all of it: the decoder is flushed) to the buffer.
    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match self {
            Decoder::Identity(buf) => buf.extend_from_slice(chunk),
            Decoder::Gzip(d) => {
                d.write_all(chunk)?;
                d.flush()?;
            }
            Decoder::Zstd(d) => {
                d.write_all(chunk)?;
                d.flush()?;
            }
        }
        Ok(())
    }

    fn buf(&self) -> &Vec<u8> {
        match self {
            Decoder::Identity(buf) => buf,
            Decoder::Gzip(d) => d.get_ref(),
            Decoder::Zstd(d) => d.get_ref(),
        }
    }

    fn buf_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Decoder::Identity(buf) => buf,
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zstd(d) => d.get_mut(),
        }
    }
}

/// Cuts the decoded body into lines.
pub(super) struct Framer {
    format: Format,
    decoder: Decoder,
    /// Where the first line not yet returned starts in the buffer.
    start: usize,
    /// Bytes from `start` already searched for a newline (NDJSON).
    scanned: usize,
}

impl Framer {
    pub(super) fn new(format: Format, decoder: Decoder) -> Framer {
        Framer {
            format,
            decoder,
            start: 0,
            scanned: 0,
        }
    }

    /// Takes in a chunk of the body as received.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<(), SyncClientError> {
        let buf = self.decoder.buf_mut();
        if self.start == buf.len() {
            buf.clear();
        } else if self.start > 0 {
            buf.drain(..self.start);
        }
        self.start = 0;
        self.decoder
            .push(chunk)
            .map_err(SyncClientError::Decompress)
    }

    /// The next complete line of what was pushed so far, if there is one. A line that does not
    /// parse is an error and is skipped.
    pub(super) fn next_line(&mut self) -> Result<Option<Value>, SyncClientError> {
        let rest = &self.decoder.buf()[self.start..];
        match self.format {
            Format::Ndjson => {
                let Some(pos) = rest[self.scanned..].iter().position(|&b| b == b'\n') else {
                    self.scanned = rest.len();
                    return Ok(None);
                };
                let end = self.scanned + pos;
                let line = serde_json::from_slice(&rest[..end]).map_err(SyncClientError::Json);
                self.start += end + 1;
                self.scanned = 0;
                line.map(Some)
            }
            Format::Bson => {
                let Some(len) = rest.first_chunk::<4>() else {
                    return Ok(None);
                };
                let len = i32::from_le_bytes(*len);
                let len = usize::try_from(len).map_err(|_| SyncClientError::BsonLength(len))?;
                if rest.len() < len {
                    return Ok(None);
                }
                let doc = bson::deserialize_from_slice(&rest[..len]).map_err(SyncClientError::Bson);
                self.start += len;
                doc.map(Some)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lines() -> Vec<Value> {
        vec![
            json!({"checkpoint": {"last_op_id": "3", "buckets": [{"bucket": "b", "count": 3}]}}),
            json!({"data": {"bucket": "b", "data": [{"op": "PUT", "data": "{\"id\":\"é\"}"}]}}),
            json!({"checkpoint_complete": {"last_op_id": "3"}}),
        ]
    }

    fn body(format: Format) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines() {
            match format {
                Format::Ndjson => {
                    serde_json::to_writer(&mut out, &line).unwrap();
                    out.push(b'\n');
                }
                Format::Bson => out.extend(bson::serialize_to_vec(&line).unwrap()),
            }
        }
        out
    }

    fn compress(encoding: Encoding, plain: &[u8]) -> Vec<u8> {
        match encoding {
            Encoding::Identity => plain.to_vec(),
            Encoding::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(plain).unwrap();
                e.finish().unwrap()
            }
            Encoding::Zstd => zstd::encode_all(plain, 3).unwrap(),
        }
    }

    /// Feeds `wire` in chunks of `size` bytes, taking every line as soon as it is complete.
    fn read(format: Format, encoding: Encoding, wire: &[u8], size: usize) -> Vec<Value> {
        let mut framer = Framer::new(format, Decoder::new(encoding).unwrap());
        let mut got = Vec::new();
        for chunk in wire.chunks(size) {
            framer.push(chunk).unwrap();
            while let Some(line) = framer.next_line().unwrap() {
                got.push(line);
            }
        }
        got
    }

    #[test]
    fn every_format_and_encoding_in_chunks_of_any_size() {
        for format in [Format::Ndjson, Format::Bson] {
            for encoding in [Encoding::Identity, Encoding::Gzip, Encoding::Zstd] {
                let wire = compress(encoding, &body(format));
                for size in [1, 2, 3, 7, 64, wire.len()] {
                    assert_eq!(
                        read(format, encoding, &wire, size),
                        lines(),
                        "{format:?} {encoding:?} in chunks of {size}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_line_is_returned_once_its_last_byte_arrives() {
        let mut framer = Framer::new(Format::Ndjson, Decoder::new(Encoding::Identity).unwrap());
        framer.push(b"{\"a\":1}\n{\"b\"").unwrap();
        assert_eq!(framer.next_line().unwrap(), Some(json!({"a": 1})));
        assert_eq!(framer.next_line().unwrap(), None);
        framer.push(b":2}").unwrap();
        assert_eq!(framer.next_line().unwrap(), None);
        framer.push(b"\n").unwrap();
        assert_eq!(framer.next_line().unwrap(), Some(json!({"b": 2})));
        assert_eq!(framer.next_line().unwrap(), None);
    }

    #[test]
    fn a_broken_line_is_an_error_and_the_next_one_still_reads() {
        let mut framer = Framer::new(Format::Ndjson, Decoder::new(Encoding::Identity).unwrap());
        framer.push(b"not json\n{\"ok\":true}\n").unwrap();
        assert!(matches!(framer.next_line(), Err(SyncClientError::Json(_))));
        assert_eq!(framer.next_line().unwrap(), Some(json!({"ok": true})));
    }

    #[test]
    fn a_negative_bson_length_is_an_error() {
        let mut framer = Framer::new(Format::Bson, Decoder::new(Encoding::Identity).unwrap());
        framer.push(&(-5i32).to_le_bytes()).unwrap();
        assert!(matches!(
            framer.next_line(),
            Err(SyncClientError::BsonLength(-5))
        ));
    }

    #[test]
    fn a_corrupt_gzip_body_is_an_error() {
        let mut framer = Framer::new(Format::Ndjson, Decoder::new(Encoding::Gzip).unwrap());
        let pushed = framer.push(b"this is not gzip at all, not even its header\n");
        assert!(matches!(pushed, Err(SyncClientError::Decompress(_))));
    }
}
