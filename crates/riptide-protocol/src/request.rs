//! The body of `POST /sync/stream` (the Rust core's `StreamingSyncRequest`).

use serde::{Deserialize, Serialize};

use crate::OpId;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamingSyncRequest {
    /// Buckets the client already has, with the position to continue after.
    #[serde(default)]
    pub buckets: Vec<BucketRequest>,
    #[serde(default)]
    pub include_checksum: Option<bool>,
    #[serde(default)]
    pub raw_data: Option<bool>,
    #[serde(default)]
    pub binary_data: Option<bool>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Client-supplied parameters (`request.parameters()`): never trusted for access decisions.
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub streams: Option<StreamsRequest>,
    #[serde(default)]
    pub app_metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// Legacy: restrict the stream to these buckets.
    #[serde(default)]
    pub only: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRequest {
    pub name: String,
    pub after: OpId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamsRequest {
    #[serde(default = "default_true")]
    pub include_defaults: bool,
    #[serde(default)]
    pub subscriptions: Vec<StreamSubscription>,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamSubscription {
    pub stream: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    pub override_priority: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_rust_core_sends() {
        let body = r#"{"buckets":[{"name":"user_lists[\"u1\"]","after":"1042"}],"include_checksum":true,"raw_data":true,"binary_data":true,"client_id":"5b0c","parameters":{},"streams":{"include_defaults":true,"subscriptions":[]}}"#;
        let req: StreamingSyncRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.buckets[0].after, OpId(1042));
        assert_eq!(req.client_id.as_deref(), Some("5b0c"));
    }

    #[test]
    fn empty_object_is_a_valid_request() {
        let req: StreamingSyncRequest = serde_json::from_str("{}").unwrap();
        assert!(req.buckets.is_empty());
    }
}
