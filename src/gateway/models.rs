//! `GET /v1/models`: the union of the backends' models, plus `auto`.

use serde_json::{json, Value};

use super::Gateway;
use crate::routing::balancer::AUTO_MODEL;

pub fn list(gateway: &Gateway) -> Value {
    let mut data = vec![model_entry(AUTO_MODEL, "airgate")];
    for model in &gateway.models {
        let owner = gateway
            .backends
            .iter()
            .find(|b| b.serves(model))
            .map_or("airgate", |b| b.name.as_str());
        data.push(model_entry(model, owner));
    }
    json!({ "object": "list", "data": data })
}

fn model_entry(id: &str, owned_by: &str) -> Value {
    json!({ "id": id, "object": "model", "created": 0, "owned_by": owned_by })
}
