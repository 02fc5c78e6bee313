//! Schemas of fields reserved for later versions: any object is stored as given (so a
//! newer operator's ModelRoutes survive a round trip), and [`crate::validate`] refuses
//! them until they are implemented.

use schemars::{Schema, SchemaGenerator, json_schema};

pub(crate) fn object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

pub(crate) fn list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        },
    })
}
