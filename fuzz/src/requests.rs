//! RSocket payloads (SETUP and REQUEST_STREAM metadata, sync requests) as JSON or BSON, and
//! the HTTP sync request body.

use riptide_protocol::StreamingSyncRequest;
use riptide_protocol::nesting::{MAX_BSON_DEPTH, check_bson_depth};
use riptide_protocol::rsocket::{
    PayloadMime, RequestError, RouteMetadata, SetupMetadata, decode, decode_sync_request,
};

fn mime(selector: u8) -> PayloadMime {
    if selector & 1 == 0 {
        PayloadMime::Json
    } else {
        PayloadMime::Bson
    }
}

/// SETUP and REQUEST_STREAM metadata: typed errors, never a panic or a stack overflow.
pub fn metadata(data: &[u8]) {
    let Some((sel, bytes)) = crate::selector(data) else {
        return;
    };
    let mime = mime(sel);
    let _ = decode::<SetupMetadata>(mime, bytes);
    let _ = decode::<RouteMetadata>(mime, bytes);
}

/// The sync request, as the WebSocket transport decodes it (JSON or BSON) and as
/// `POST /sync/stream` does (serde_json). A decoded request serialises to JSON that decodes
/// to the same request; BSON too deep is refused by the depth check, not by the stack.
pub fn sync_request(data: &[u8]) {
    let Some((sel, bytes)) = crate::selector(data) else {
        return;
    };
    let mime = mime(sel);
    let result = decode_sync_request(mime, bytes);
    if mime == PayloadMime::Bson
        && !bytes.is_empty()
        && let Err(RequestError::TooDeep { .. }) = &result
    {
        assert!(check_bson_depth(bytes, MAX_BSON_DEPTH).is_err());
    }
    if let Ok(request) = result {
        let json = serde_json::to_vec(&request).expect("a request serialises");
        let again = decode_sync_request(PayloadMime::Json, &json).expect("its JSON decodes");
        // serde_json parses floats to within one ulp, not exactly: compare floats loosely.
        let (a, b) = (serde_json::to_value(&again), serde_json::to_value(&request));
        let (Ok(a), Ok(b)) = (a, b) else {
            panic!("a decoded request converts to JSON");
        };
        assert!(same(&a, &b), "sync request round trip: {a} != {b}");
    }
    let _ = serde_json::from_slice::<StreamingSyncRequest>(bytes);
}

/// JSON equality with floats equal to within a relative 1e-12.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value as V;
    match (a, b) {
        (V::Number(x), V::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (V::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (V::Object(x), V::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}
