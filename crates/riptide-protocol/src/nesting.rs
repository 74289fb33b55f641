//! Nesting limits for the recursive decoders of outside bytes.
//!
//! Both decoders we hand client bytes to recurse once per nesting level: a document nested a
//! few hundred thousand times deep overflows the stack of the task decoding it and aborts the
//! process. `serde_json` refuses input nested 128 levels deep or more by itself (its default
//! recursion limit, which we never disable); the `bson` crate has no such limit, so every BSON
//! document from a client is walked here first, with an explicit stack, and refused when it
//! nests deeper than [`MAX_BSON_DEPTH`].

use bson::RawDocument;
use bson::raw::{RawBsonRef, RawIter};

/// Deepest nesting of documents and arrays accepted in a BSON payload (the top-level document
/// is depth 1). The official clients send requests a few levels deep.
pub const MAX_BSON_DEPTH: usize = 64;

/// Deepest nesting `serde_json` accepts (its built-in recursion limit of 128 refuses the
/// 128th level; stated here so the limits are documented in one place).
pub const MAX_JSON_DEPTH: usize = 127;

/// Why a BSON document was refused before decoding.
#[derive(Debug, thiserror::Error)]
pub enum NestingError {
    #[error("document nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("malformed BSON document")]
    Malformed(#[source] bson::error::Error),
}

/// Checks that `bytes` is one BSON document whose documents and arrays nest at most
/// `max_depth` levels deep, without recursion: the walk keeps one iterator per open level on
/// the heap, so its stack use does not depend on the input.
pub fn check_bson_depth(bytes: &[u8], max_depth: usize) -> Result<(), NestingError> {
    let root = RawDocument::from_bytes(bytes).map_err(NestingError::Malformed)?;
    let mut open: Vec<RawIter<'_>> = vec![root.iter_elements()];
    while let Some(level) = open.last_mut() {
        let Some(element) = level.next() else {
            open.pop();
            continue;
        };
        let value = element
            .and_then(|e| e.value())
            .map_err(NestingError::Malformed)?;
        let child = match value {
            RawBsonRef::Document(d) => d.iter_elements(),
            RawBsonRef::Array(a) => a.iter_elements(),
            RawBsonRef::JavaScriptCodeWithScope(c) => c.scope.iter_elements(),
            _ => continue,
        };
        if open.len() >= max_depth {
            return Err(NestingError::TooDeep { limit: max_depth });
        }
        open.push(child);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `{"a": {"a": … {}}}` with `depth` documents in all (8 bytes per level).
    pub fn nested_bson(depth: usize) -> Vec<u8> {
        let depth = depth.max(1);
        let mut out = Vec::with_capacity(depth * 8);
        for k in 0..depth - 1 {
            let len = u32::try_from(8 * (depth - 1 - k) + 5).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&[0x03, b'a', 0]);
        }
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
        out.resize(out.len() + depth - 1, 0);
        out
    }

    #[test]
    fn accepts_up_to_the_limit_and_refuses_beyond() {
        assert!(check_bson_depth(&nested_bson(MAX_BSON_DEPTH), MAX_BSON_DEPTH).is_ok());
        assert!(matches!(
            check_bson_depth(&nested_bson(MAX_BSON_DEPTH + 1), MAX_BSON_DEPTH),
            Err(NestingError::TooDeep {
                limit: MAX_BSON_DEPTH
            })
        ));
    }

    #[test]
    fn a_million_levels_are_refused_without_recursion() {
        // 8 bytes per level: 8 MB, far beyond what a recursive walk survives on a test
        // thread's 2 MiB stack.
        let bytes = nested_bson(1_000_000);
        assert!(matches!(
            check_bson_depth(&bytes, MAX_BSON_DEPTH),
            Err(NestingError::TooDeep { .. })
        ));
    }

    #[test]
    fn arrays_count_as_levels() {
        let doc = bson::doc! {"a": [[[1]]]};
        let bytes = bson::serialize_to_vec(&doc).unwrap_or_default();
        assert!(check_bson_depth(&bytes, 4).is_ok());
        assert!(check_bson_depth(&bytes, 3).is_err());
    }

    #[test]
    fn malformed_documents_are_errors() {
        assert!(matches!(
            check_bson_depth(b"\xff\xff\xff\x7f", MAX_BSON_DEPTH),
            Err(NestingError::Malformed(_))
        ));
        // A nested document whose length points past its parent.
        let mut bytes = nested_bson(3);
        bytes[7] = 0x7f;
        assert!(check_bson_depth(&bytes, MAX_BSON_DEPTH).is_err());
    }

    #[test]
    fn serde_json_refuses_deep_input_by_itself() {
        let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
        let err = serde_json::from_str::<serde_json::Value>(&deep);
        assert!(err.is_err());
        let ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(serde_json::from_str::<serde_json::Value>(&ok).is_ok());
    }
}
