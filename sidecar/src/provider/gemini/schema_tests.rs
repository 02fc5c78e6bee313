use serde_json::{Value, json};

use super::convert;

fn ok(schema: Value) -> Value {
    convert(&schema, "p").unwrap()
}

fn refused(schema: Value) -> String {
    convert(&schema, "tools[0].function.parameters")
        .unwrap_err()
        .to_string()
}

/// Every member name anywhere in `v` is one Gemini's `Schema` has (property names aside).
fn assert_only_gemini_members(v: &Value) {
    const ALLOWED: &[&str] = &[
        "type",
        "format",
        "description",
        "nullable",
        "enum",
        "items",
        "minItems",
        "maxItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "anyOf",
        "propertyOrdering",
        "example",
    ];
    let Value::Object(obj) = v else { return };
    for (k, child) in obj {
        assert!(ALLOWED.contains(&k.as_str()), "`{k}` in {v}");
        match k.as_str() {
            "properties" => child
                .as_object()
                .unwrap()
                .values()
                .for_each(assert_only_gemini_members),
            "items" => assert_only_gemini_members(child),
            "anyOf" => child
                .as_array()
                .unwrap()
                .iter()
                .for_each(assert_only_gemini_members),
            "type" => assert!(child.is_string(), "type array left in {v}"),
            _ => {}
        }
    }
}

#[test]
fn plain_types_are_upper_cased() {
    assert_eq!(
        ok(
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}, "required": ["n"]})
        ),
        json!({"type": "OBJECT", "properties": {"n": {"type": "INTEGER", "minimum": 1}}, "required": ["n"]})
    );
}

#[test]
fn refs_are_inlined_and_defs_dropped() {
    let out = ok(json!({
        "type": "object",
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}},
        "definitions": {"Old": {"type": "boolean"}},
        "properties": {
            "home": {"$ref": "#/$defs/Address", "description": "where they live"},
            "work": {"allOf": [{"$ref": "#/$defs/Address"}], "description": "pydantic style"},
            "flag": {"$ref": "#/definitions/Old"}
        }
    }));
    assert_eq!(
        out,
        json!({"type": "OBJECT", "properties": {
            "home": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "description": "where they live"},
            "work": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "description": "pydantic style"},
            "flag": {"type": "BOOLEAN"}
        }})
    );
    assert_only_gemini_members(&out);
}

#[test]
fn recursion_is_refused_with_the_path() {
    let msg = refused(json!({
        "type": "object",
        "$defs": {"Node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}}},
        "properties": {"root": {"$ref": "#/$defs/Node"}}
    }));
    assert!(msg.contains("recursive"), "{msg}");
    assert!(
        msg.contains("tools[0].function.parameters.properties.root.properties.children.items"),
        "{msg}"
    );
    assert!(msg.contains("#/$defs/Node"), "{msg}");
    let msg = refused(json!({"type": "object", "properties": {"me": {"$ref": "#"}}}));
    assert!(msg.contains("recursive"), "{msg}");
}

#[test]
fn dangling_and_remote_refs_are_refused() {
    assert!(refused(json!({"$ref": "#/$defs/Missing"})).contains("points to nothing"));
    assert!(refused(json!({"$ref": "https://example.com/s.json"})).contains("remote"));
}

#[test]
fn type_arrays_become_nullable() {
    assert_eq!(
        ok(json!({"type": ["string", "null"]})),
        json!({"type": "STRING", "nullable": true})
    );
    // The items of an array stay (T-G3).
    assert_eq!(
        ok(json!({"type": ["array", "null"], "items": {"type": "string"}})),
        json!({"type": "ARRAY", "nullable": true, "items": {"type": "STRING"}})
    );
    assert_eq!(
        ok(json!({"type": ["string", "integer", "null"]})),
        json!({"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": true})
    );
}

#[test]
fn any_of_with_null_becomes_nullable() {
    assert_eq!(
        ok(
            json!({"anyOf": [{"type": "object", "properties": {"a": {"type": "string"}}}, {"type": "null"}], "description": "d"})
        ),
        json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "nullable": true, "description": "d"})
    );
    assert_eq!(
        ok(json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]})),
        json!({"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": true})
    );
}

#[test]
fn annotations_are_dropped() {
    let out = ok(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "x", "title": "T", "default": {}, "strict": true, "examples": [1],
        "type": "object", "additionalProperties": false,
        "properties": {"a": {"type": "string", "title": "A", "default": "z", "readOnly": true}}
    }));
    assert_eq!(
        out,
        json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}})
    );
}

#[test]
fn const_becomes_enum_and_null_in_enum_nullable() {
    assert_eq!(
        ok(json!({"const": "fixed"})),
        json!({"type": "STRING", "enum": ["fixed"]})
    );
    assert_eq!(
        ok(json!({"type": ["string", "null"], "enum": ["a", "b", null]})),
        json!({"type": "STRING", "enum": ["a", "b"], "nullable": true})
    );
    assert!(refused(json!({"const": 3})).contains("`const`"));
    assert!(refused(json!({"type": "integer", "enum": [1, 2]})).contains("non-string enum"));
}

#[test]
fn constraints_without_a_member_are_noted_in_the_description() {
    assert_eq!(
        ok(json!({"type": "number", "exclusiveMinimum": 0, "description": "price"})),
        json!({"type": "NUMBER", "description": "price (exclusiveMinimum: 0)"})
    );
}

#[test]
fn all_of_objects_are_merged_others_refused() {
    assert_eq!(
        ok(json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}
        ]})),
        json!({"type": "OBJECT", "properties": {"a": {"type": "STRING"}, "b": {"type": "INTEGER"}}, "required": ["a", "b"]})
    );
    let msg = refused(
        json!({"allOf": [{"type": "string", "minLength": 2}, {"type": "string", "maxLength": 3}]}),
    );
    assert!(msg.contains("allOf"), "{msg}");
}

#[test]
fn constructs_without_equivalent_are_refused_with_their_path() {
    for (schema, keyword, at) in [
        (
            json!({"type": "object", "properties": {"x": {"not": {"type": "string"}}}}),
            "`not`",
            "parameters.properties.x.not",
        ),
        (
            json!({"type": "object", "if": {}, "then": {}}),
            "`if`",
            "parameters.if",
        ),
        (
            json!({"type": "object", "patternProperties": {"^a": {"type": "string"}}}),
            "`patternProperties`",
            "parameters.patternProperties",
        ),
        (
            json!({"type": "object", "properties": {"m": {"type": "object", "additionalProperties": {"type": "string"}}}}),
            "`additionalProperties` with a schema",
            "parameters.properties.m.additionalProperties",
        ),
        (
            json!({"type": "object", "additionalProperties": true}),
            "`additionalProperties: true`",
            "parameters.additionalProperties",
        ),
        (
            json!({"type": "array", "items": [{"type": "string"}]}),
            "tuple",
            "parameters.items",
        ),
        (
            json!({"type": "object", "properties": {"a": {"type": "string", "contentEncoding": "base64"}}}),
            "`contentEncoding`",
            "parameters.properties.a.contentEncoding",
        ),
        (json!(true), "the schema `true`", "parameters"),
    ] {
        let msg = refused(schema.clone());
        assert!(msg.contains(keyword), "{schema}: {msg}");
        assert!(
            msg.contains(&format!("tools[0].function.{at}")),
            "{schema}: {msg}"
        );
    }
}

#[test]
fn additional_properties_false_vanishes_everywhere() {
    // T-G1: root, nested property, items, anyOf branch and $defs.
    let out = ok(json!({
        "type": "object", "additionalProperties": false,
        "$defs": {"Y": {"type": "object", "properties": {"y": {"type": "string"}}, "additionalProperties": false}},
        "properties": {
            "x": {"type": "object", "properties": {"z": {"type": "string"}}, "additionalProperties": false},
            "list": {"type": "array", "items": {"type": "object", "properties": {"i": {"type": "integer"}}, "additionalProperties": false}},
            "maybe": {"anyOf": [{"type": "object", "properties": {"m": {"type": "string"}}, "additionalProperties": false}, {"type": "null"}]},
            "y": {"$ref": "#/$defs/Y"}
        },
        "required": ["x", "list", "maybe", "y"]
    }));
    assert_only_gemini_members(&out);
    assert!(!out.to_string().contains("additionalProperties"));
    assert_eq!(out["properties"]["maybe"]["nullable"], true);
    assert_eq!(out["properties"]["y"]["properties"]["y"]["type"], "STRING");
}

#[test]
fn exponential_inlining_is_bounded() {
    // Each level refers to the next one twice: 2^20 nodes once inlined.
    let mut defs = serde_json::Map::new();
    for i in 0..20 {
        defs.insert(
            format!("L{i}"),
            json!({"type": "object", "properties": {
                "a": {"$ref": format!("#/$defs/L{}", i + 1)},
                "b": {"$ref": format!("#/$defs/L{}", i + 1)}
            }}),
        );
    }
    defs.insert("L20".into(), json!({"type": "string"}));
    let msg = refused(json!({"$defs": defs, "$ref": "#/$defs/L0"}));
    assert!(msg.contains("nodes"), "{msg}");
}
