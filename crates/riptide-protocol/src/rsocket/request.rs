//! Payload contents of the PowerSync RSocket transport: SETUP metadata
//! `{"token":"Token <jwt>","user_agent":…}`, REQUEST_STREAM metadata `{"path":"/sync/stream"}`
//! and the request data (a [`StreamingSyncRequest`]), each JSON or BSON as the SETUP's MIME
//! types declare (docs/protocol.md §2.2–2.3).

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::StreamingSyncRequest;
use crate::nesting::{MAX_BSON_DEPTH, MAX_JSON_DEPTH, NestingError, check_bson_depth};

/// Largest payload [`decode`] accepts at all (the official clients send a few KiB; the
/// service's configurable `max_request_bytes`, 4 MiB by default, is the bound that applies).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;

/// A payload encoding declared in SETUP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMime {
    Json,
    Bson,
}

impl PayloadMime {
    /// `application/json` or `application/bson` (parameters after `;` ignored).
    pub fn parse(mime: &str) -> Result<PayloadMime, RequestError> {
        let essence = mime.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/json") {
            Ok(PayloadMime::Json)
        } else if essence.eq_ignore_ascii_case("application/bson") {
            Ok(PayloadMime::Bson)
        } else {
            Err(RequestError::UnsupportedMediaType(
                essence.chars().take(100).collect(),
            ))
        }
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("payload of {0} bytes is too large")]
    TooLarge(usize),
    #[error("invalid JSON payload")]
    Json(#[source] serde_json::Error),
    #[error("invalid BSON payload")]
    Bson(#[source] bson::error::Error),
    /// Documents or arrays nested deeper than the decoders accept ([`crate::nesting`]).
    #[error("payload nested deeper than {limit} levels")]
    TooDeep { limit: usize },
}

impl From<NestingError> for RequestError {
    fn from(e: NestingError) -> Self {
        match e {
            NestingError::TooDeep { limit } => RequestError::TooDeep { limit },
            NestingError::Malformed(e) => RequestError::Bson(e),
        }
    }
}

/// serde_json reports its recursion limit as a syntax error; tell it apart for a clear message.
fn json_error(e: serde_json::Error) -> RequestError {
    if e.to_string().starts_with("recursion limit exceeded") {
        RequestError::TooDeep {
            limit: MAX_JSON_DEPTH,
        }
    } else {
        RequestError::Json(e)
    }
}

/// SETUP metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SetupMetadata {
    /// The `Authorization` value: `Token <jwt>` or `Bearer <jwt>`.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// REQUEST_STREAM metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RouteMetadata {
    #[serde(default)]
    pub path: Option<String>,
}

/// Decodes `bytes` as `mime`; empty bytes give `T::default()`. BSON documents are checked for
/// depth before the (recursive) decoder sees them; JSON depth is bounded by serde_json.
pub fn decode<T: DeserializeOwned + Default>(
    mime: PayloadMime,
    bytes: &[u8],
) -> Result<T, RequestError> {
    if bytes.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge(bytes.len()));
    }
    if bytes.is_empty() {
        return Ok(T::default());
    }
    match mime {
        PayloadMime::Json => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(T::default());
            }
            serde_json::from_slice(bytes).map_err(json_error)
        }
        PayloadMime::Bson => {
            check_bson_depth(bytes, MAX_BSON_DEPTH)?;
            bson::deserialize_from_slice(bytes).map_err(RequestError::Bson)
        }
    }
}

/// The sync request of a REQUEST_STREAM.
pub fn decode_sync_request(
    mime: PayloadMime,
    bytes: &[u8],
) -> Result<StreamingSyncRequest, RequestError> {
    decode(mime, bytes)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::OpId;

    #[test]
    fn mime_types() {
        assert_eq!(
            PayloadMime::parse("application/json").unwrap(),
            PayloadMime::Json
        );
        assert_eq!(
            PayloadMime::parse("Application/BSON; x=1").unwrap(),
            PayloadMime::Bson
        );
        assert!(matches!(
            PayloadMime::parse("text/plain"),
            Err(RequestError::UnsupportedMediaType(m)) if m == "text/plain"
        ));
    }

    #[test]
    fn json_and_bson_requests() {
        let json = br#"{"buckets":[{"name":"b","after":"7"}],"client_id":"c","streams":{"include_defaults":true,"subscriptions":[]}}"#;
        let req = decode_sync_request(PayloadMime::Json, json).unwrap();
        assert_eq!(req.buckets[0].after, OpId(7));
        let doc = bson::doc! {"buckets": [{"name": "b", "after": "7"}], "client_id": "c"};
        let bytes = bson::serialize_to_vec(&doc).unwrap();
        let req2 = decode_sync_request(PayloadMime::Bson, &bytes).unwrap();
        assert_eq!(req2.buckets, req.buckets);
        assert_eq!(
            decode_sync_request(PayloadMime::Json, b"").unwrap(),
            StreamingSyncRequest::default()
        );
        let setup: SetupMetadata = decode(
            PayloadMime::Json,
            br#"{"token":"Token a.b.c","user_agent":"x"}"#,
        )
        .unwrap();
        assert_eq!(setup.token.as_deref(), Some("Token a.b.c"));
        assert!(decode_sync_request(PayloadMime::Json, b"[1]").is_err());
        assert!(decode_sync_request(PayloadMime::Bson, b"\xff\xff\xff\x7f").is_err());
    }

    #[test]
    fn deep_payloads_are_refused_with_a_clear_error() {
        let bson = crate::nesting::tests::nested_bson(400_000);
        let err = decode::<SetupMetadata>(PayloadMime::Bson, &bson).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::TooDeep {
                    limit: MAX_BSON_DEPTH
                }
            ),
            "{err}"
        );
        assert_eq!(err.to_string(), "payload nested deeper than 64 levels");
        let json = format!(
            "{{\"parameters\":{{\"a\":{}{}}}}}",
            "[".repeat(1_000_000),
            "]".repeat(1_000_000)
        );
        let err = decode_sync_request(PayloadMime::Json, json.as_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                RequestError::TooDeep {
                    limit: MAX_JSON_DEPTH
                }
            ),
            "{err}"
        );
        // Deep but within the limit: decodes.
        let ok = crate::nesting::tests::nested_bson(MAX_BSON_DEPTH - 1);
        assert!(
            decode::<serde_json::Map<String, serde_json::Value>>(PayloadMime::Bson, &ok).is_ok()
        );
    }

    fn arb_bson_like() -> impl Strategy<Value = Vec<u8>> {
        // A valid document, then mutated: lengths and type bytes are where decoders break.
        (
            prop::collection::vec(any::<u8>(), 0..64),
            any::<i32>(),
            0usize..80,
            any::<u8>(),
        )
            .prop_map(|(tail, len, at, byte)| {
                let doc = bson::doc! {"buckets": [{"name": "b", "after": "1"}], "client_id": "c", "parameters": {"x": 1}};
                let mut bytes = bson::serialize_to_vec(&doc).unwrap_or_default();
                if at < bytes.len() {
                    bytes[at] = byte;
                }
                if at % 3 == 0 {
                    bytes[..4].copy_from_slice(&len.to_le_bytes());
                }
                bytes.extend_from_slice(&tail);
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Arbitrary bytes never panic either decoder.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_sync_request(PayloadMime::Json, &bytes);
            let _ = decode_sync_request(PayloadMime::Bson, &bytes);
            let _ = decode::<SetupMetadata>(PayloadMime::Json, &bytes);
            let _ = decode::<RouteMetadata>(PayloadMime::Bson, &bytes);
        }

        /// Corrupted BSON documents (lying length prefixes, flipped type bytes) are errors,
        /// not panics or huge allocations.
        #[test]
        fn corrupted_bson_never_panics(bytes in arb_bson_like()) {
            let _ = decode_sync_request(PayloadMime::Bson, &bytes);
        }

        /// JSON-ish input built from the request's own tokens.
        #[test]
        fn json_fragments_never_panic(parts in prop::collection::vec(prop::sample::select(vec![
            "{", "}", "[", "]", ",", ":", "\"buckets\"", "\"after\"", "\"name\"", "\"1\"",
            "\"-1\"", "\"99999999999999999999\"", "null", "true", "1e999", "\"client_id\"",
            "\"streams\"", "\"subscriptions\"", "\"override_priority\"", "300", "-1",
        ]), 0..40)) {
            let text: String = parts.concat();
            let _ = decode_sync_request(PayloadMime::Json, text.as_bytes());
        }
    }
}
