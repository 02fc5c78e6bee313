//! `GET /v1/models`: the aliases this sidecar serves, in OpenAI's list format.

use bytes::Bytes;
use serde::Serialize;

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

/// The model list body for `aliases`.
pub fn list<'a>(aliases: impl Iterator<Item = &'a str>) -> Bytes {
    let data = aliases.map(model).collect();
    serde_json::to_vec(&List {
        object: "list",
        data,
    })
    .map(Bytes::from)
    .unwrap_or_default()
}

/// One model object.
pub fn one(alias: &str) -> Bytes {
    serde_json::to_vec(&model(alias))
        .map(Bytes::from)
        .unwrap_or_default()
}

fn model(id: &str) -> Model<'_> {
    Model {
        id,
        object: "model",
        created: 0,
        owned_by: "modelroute",
    }
}
