//! What a sync request knows about its user: the verified JWT payload and the client's own
//! (untrusted) parameters.

use serde_json::{Map, Value};

use crate::SqliteValue;

/// Inputs of parameter queries for one connection.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestParameters {
    /// `request.user_id()` / `token_parameters.user_id`: the token's `sub`.
    pub user_id: SqliteValue,
    /// `request.jwt()`: the whole verified token payload.
    pub jwt: Map<String, Value>,
    /// `token_parameters.<key>`: the token's `parameters` claim (trusted).
    pub token_parameters: Map<String, Value>,
    /// `request.parameters()` / `user_parameters.<key>`: sent by the client, never trusted for
    /// access decisions.
    pub user_parameters: Map<String, Value>,
    /// `subscription.parameters()`: the parameters of the one Sync Stream subscription being
    /// resolved (`None` for a default subscription and for classic rules); never trusted.
    pub subscription: Option<Map<String, Value>>,
}

impl RequestParameters {
    /// Builds the parameters from a verified JWT payload and the request's `parameters`.
    pub fn new(jwt: Map<String, Value>, user_parameters: Map<String, Value>) -> Self {
        let user_id = match jwt.get("sub") {
            Some(Value::String(s)) => SqliteValue::Text(s.clone()),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => SqliteValue::Integer(i),
                None => SqliteValue::Real(n.as_f64().unwrap_or(0.0)),
            },
            _ => SqliteValue::Null,
        };
        let token_parameters = match jwt.get("parameters") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        RequestParameters {
            user_id,
            jwt,
            token_parameters,
            user_parameters,
            subscription: None,
        }
    }

    /// The same request seen by one stream subscription with these parameters.
    pub fn with_subscription(&self, parameters: Option<Map<String, Value>>) -> Self {
        RequestParameters {
            subscription: parameters,
            ..self.clone()
        }
    }
}
