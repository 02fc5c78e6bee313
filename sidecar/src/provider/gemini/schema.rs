//! OpenAI JSON Schemas -> the OpenAPI-subset `Schema` Gemini accepts in
//! `FunctionDeclaration.parameters` and `GenerationConfig.responseSchema`.
//!
//! Gemini parses `Schema` strictly: any member it does not know (`additionalProperties`,
//! `$ref`, `$defs`, a `type` array, ...) fails the whole request with a 400. The rewrite
//! keeps the meaning where the subset can express it and refuses, with the keyword and
//! its path, where it cannot; it never silently widens what the model may emit.
//!
//! Rules (see docs/providers-gemini.md):
//! - `$ref` to `#/...` (usually `#/$defs/X`) is inlined; `$defs`/`definitions` dropped;
//!   a `$ref` cycle is refused (Gemini has no recursion). Siblings of `$ref` win over
//!   the target's members (`{"$ref": .., "description": ..}`).
//! - `type: ["x", "null"]` -> `type: X, nullable: true`; several non-null types ->
//!   `anyOf` of one branch per type.
//! - `anyOf`/`oneOf` with a `{"type": "null"}` branch -> `nullable: true`; one branch
//!   left is merged into the schema. `oneOf` is sent as `anyOf`.
//! - `allOf` of one member is unwrapped; of several object members, merged (properties
//!   and `required` united); anything else is refused.
//! - `const: "v"` -> `enum: ["v"]`; `null` in `enum` -> `nullable: true`. Non-string
//!   enum values are refused (the subset's `enum` is `[string]`).
//! - Dropped (no effect on what may be generated): `additionalProperties: false`,
//!   `title`, `default`, `examples`, `$schema`, `$id`, `$comment`, `$anchor`, `strict`,
//!   `readOnly`, `writeOnly`, `deprecated`.
//! - Kept as a note in `description` (lossy, so stated): `exclusiveMinimum`,
//!   `exclusiveMaximum`, `multipleOf`, `uniqueItems`.
//! - Refused: `not`, `if`/`then`/`else`, `patternProperties`, `additionalProperties`
//!   `true` or a schema, `dependentRequired`/`dependentSchemas`/`dependencies`,
//!   `unevaluated*`, `prefixItems`/tuple `items`, `contains`, `propertyNames`, remote
//!   `$ref`s, boolean schemas, and any keyword not listed here.

use serde_json::{Map, Value, json};

use crate::error::ProxyError;

/// Members of Gemini's `Schema` copied as they are (after conversion of their values).
const KEPT: &[&str] = &[
    "format",
    "description",
    "nullable",
    "minItems",
    "maxItems",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "propertyOrdering",
    "example",
];

/// Annotations that do not change what may be generated.
const DROPPED: &[&str] = &[
    "title",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "$anchor",
    "strict",
    "readOnly",
    "writeOnly",
    "deprecated",
    "$defs",
    "definitions",
];

/// Constraints the subset lacks; stated in the description instead.
const NOTED: &[&str] = &[
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "uniqueItems",
];

/// Keywords with no faithful equivalent.
const REFUSED: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "unevaluatedProperties",
    "unevaluatedItems",
    "prefixItems",
    "contains",
    "minContains",
    "maxContains",
    "propertyNames",
    "$dynamicRef",
    "$recursiveRef",
];

/// Inlining `$ref`s can grow a schema exponentially; past this many nodes it is refused.
const MAX_NODES: usize = 10_000;

/// Rewrites `schema` (found at `path`, e.g. `tools[0].function.parameters`) for Gemini.
/// Errors are the client's (400) and name the construct and its path.
pub fn convert(schema: &Value, path: &str) -> Result<Value, ProxyError> {
    let mut rewriter = Rewriter {
        root: schema,
        stack: Vec::new(),
        nodes: 0,
    };
    rewriter.schema(schema, path)
}

struct Rewriter<'a> {
    root: &'a Value,
    /// The `$ref`s being inlined, outermost first: a repeat is a cycle.
    stack: Vec<String>,
    nodes: usize,
}

fn refuse(path: &str, what: impl std::fmt::Display) -> ProxyError {
    ProxyError::BadRequest(format!(
        "Gemini cannot represent {what} at {path}; remove it or route this request to another provider"
    ))
}

// === impl Rewriter ===

impl Rewriter<'_> {
    fn schema(&mut self, schema: &Value, path: &str) -> Result<Value, ProxyError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(ProxyError::BadRequest(format!(
                "the JSON Schema at {path} has more than {MAX_NODES} nodes once its $refs are inlined"
            )));
        }
        let Value::Object(obj) = schema else {
            return Err(refuse(path, format_args!("the schema `{schema}`")));
        };
        if let Some(reference) = obj.get("$ref") {
            return self.reference(reference, obj, path);
        }
        if let Some(all) = obj.get("allOf") {
            return self.all_of(all, obj, path);
        }

        let mut out = Map::new();
        let mut notes = Vec::new();
        let mut nullable = false;
        let mut type_names = Vec::new();
        for (key, value) in obj {
            let here = format!("{path}.{key}");
            match key.as_str() {
                "type" => {
                    let (names, null) = types(value, &here)?;
                    nullable |= null;
                    type_names = names;
                }
                "properties" => {
                    let Value::Object(props) = value else {
                        return Err(refuse(&here, "a `properties` that is not an object"));
                    };
                    let mut converted = Map::new();
                    for (name, prop) in props {
                        converted
                            .insert(name.clone(), self.schema(prop, &format!("{here}.{name}"))?);
                    }
                    out.insert("properties".into(), Value::Object(converted));
                }
                "items" => {
                    if value.is_array() {
                        return Err(refuse(&here, "tuple `items` (an array of schemas)"));
                    }
                    out.insert("items".into(), self.schema(value, &here)?);
                }
                "anyOf" | "oneOf" => {
                    let Value::Array(branches) = value else {
                        return Err(refuse(
                            &here,
                            format_args!("a `{key}` that is not an array"),
                        ));
                    };
                    let mut kept = Vec::new();
                    for (i, branch) in branches.iter().enumerate() {
                        let b = self.schema(branch, &format!("{here}[{i}]"))?;
                        if is_null_type(&b) {
                            nullable = true;
                        } else {
                            kept.push(b);
                        }
                    }
                    match kept.len() {
                        0 => {}
                        1 => {
                            if let Some(Value::Object(single)) = kept.pop() {
                                merge_into(&mut out, single, &here)?;
                            }
                        }
                        _ => {
                            if out.contains_key("anyOf") {
                                return Err(refuse(&here, "both `anyOf` and `oneOf`"));
                            }
                            out.insert("anyOf".into(), Value::Array(kept));
                        }
                    }
                }
                "enum" => {
                    let Value::Array(values) = value else {
                        return Err(refuse(&here, "an `enum` that is not an array"));
                    };
                    let mut strings = Vec::new();
                    for v in values {
                        match v {
                            Value::String(_) => strings.push(v.clone()),
                            Value::Null => nullable = true,
                            other => {
                                return Err(refuse(
                                    &here,
                                    format_args!(
                                        "the non-string enum value `{other}` (Gemini enums are strings)"
                                    ),
                                ));
                            }
                        }
                    }
                    out.insert("enum".into(), Value::Array(strings));
                }
                "const" => match value {
                    Value::String(_) => {
                        out.insert("enum".into(), json!([value]));
                    }
                    other => {
                        return Err(refuse(
                            &here,
                            format_args!(
                                "the non-string `const` `{other}` (Gemini enums are strings)"
                            ),
                        ));
                    }
                },
                "additionalProperties" => match value {
                    Value::Bool(false) => {}
                    Value::Bool(true) => {
                        return Err(refuse(
                            &here,
                            "`additionalProperties: true` (free-form maps)",
                        ));
                    }
                    _ => {
                        return Err(refuse(
                            &here,
                            "`additionalProperties` with a schema (maps with typed values)",
                        ));
                    }
                },
                k if KEPT.contains(&k) => {
                    out.insert(key.clone(), value.clone());
                }
                k if DROPPED.contains(&k) => {}
                k if NOTED.contains(&k) => notes.push(format!("{key}: {value}")),
                k if REFUSED.contains(&k) => {
                    return Err(refuse(&here, format_args!("JSON Schema keyword `{key}`")));
                }
                _ => {
                    return Err(refuse(
                        &here,
                        format_args!("JSON Schema keyword `{key}` (not in Gemini's Schema)"),
                    ));
                }
            }
        }
        match type_names.len() {
            0 => {}
            1 => {
                out.insert("type".into(), Value::String(type_names.remove(0)));
            }
            _ => {
                if out.contains_key("anyOf") {
                    return Err(refuse(path, "a `type` array together with `anyOf`"));
                }
                let branches = type_names.iter().map(|n| json!({"type": n})).collect();
                out.insert("anyOf".into(), Value::Array(branches));
            }
        }
        if nullable {
            out.insert("nullable".into(), Value::Bool(true));
        }
        if out.contains_key("enum") && !out.contains_key("type") {
            out.insert("type".into(), json!("STRING"));
        }
        if !notes.is_empty() {
            let note = format!("({})", notes.join(", "));
            let description = match out.get("description").and_then(Value::as_str) {
                Some(d) if !d.is_empty() => format!("{d} {note}"),
                _ => note,
            };
            out.insert("description".into(), Value::String(description));
        }
        Ok(Value::Object(out))
    }

    /// `{"$ref": "#/...", siblings}`: the target, inlined, with the siblings over it.
    fn reference(
        &mut self,
        reference: &Value,
        obj: &Map<String, Value>,
        path: &str,
    ) -> Result<Value, ProxyError> {
        let Some(target) = reference.as_str() else {
            return Err(refuse(path, "a `$ref` that is not a string"));
        };
        let Some(pointer) = target.strip_prefix('#') else {
            return Err(refuse(path, format_args!("the remote `$ref` `{target}`")));
        };
        if self.stack.iter().any(|r| r == target) {
            return Err(ProxyError::BadRequest(format!(
                "Gemini cannot represent the recursive schema at {path}: `$ref` `{target}` refers back to itself ({} -> {target}); flatten it or route this request to another provider",
                self.stack.join(" -> ")
            )));
        }
        let Some(resolved) = self.root.pointer(pointer) else {
            return Err(ProxyError::BadRequest(format!(
                "`$ref` `{target}` at {path} points to nothing in the schema"
            )));
        };
        self.stack.push(target.to_string());
        let inlined = self.schema(resolved, path);
        self.stack.pop();
        let Value::Object(mut inlined) = inlined? else {
            return Err(refuse(path, format_args!("the `$ref` target `{target}`")));
        };
        let mut siblings = obj.clone();
        siblings.remove("$ref");
        if !siblings.is_empty() {
            let Value::Object(siblings) = self.schema(&Value::Object(siblings), path)? else {
                return Err(refuse(path, "`$ref` siblings"));
            };
            for (k, v) in siblings {
                inlined.insert(k, v);
            }
        }
        Ok(Value::Object(inlined))
    }

    /// `allOf`: one member is unwrapped; several object members are merged.
    fn all_of(
        &mut self,
        all: &Value,
        obj: &Map<String, Value>,
        path: &str,
    ) -> Result<Value, ProxyError> {
        let here = format!("{path}.allOf");
        let Value::Array(members) = all else {
            return Err(refuse(&here, "an `allOf` that is not an array"));
        };
        let mut merged = Map::new();
        for (i, member) in members.iter().enumerate() {
            let Value::Object(m) = self.schema(member, &format!("{here}[{i}]"))? else {
                return Err(refuse(&here, "`allOf`"));
            };
            if members.len() == 1 {
                merged = m;
                continue;
            }
            let object_like = m.get("type").is_none_or(|t| t == "OBJECT")
                && m.keys().all(|k| {
                    matches!(
                        k.as_str(),
                        "type" | "properties" | "required" | "description"
                    )
                });
            if !object_like {
                return Err(refuse(
                    &here,
                    "`allOf` of members that are not plain objects",
                ));
            }
            merge_into(&mut merged, m, &here)?;
        }
        let mut rest = obj.clone();
        rest.remove("allOf");
        if !rest.is_empty() {
            let Value::Object(rest) = self.schema(&Value::Object(rest), path)? else {
                return Err(refuse(path, "`allOf` siblings"));
            };
            merge_into(&mut merged, rest, path)?;
        }
        Ok(Value::Object(merged))
    }
}

/// `type` as Gemini's upper-case names (without `NULL` unless it is the only one), and
/// whether `"null"` was among them.
fn types(value: &Value, path: &str) -> Result<(Vec<String>, bool), ProxyError> {
    let list = match value {
        Value::String(_) => std::slice::from_ref(value),
        Value::Array(list) => list.as_slice(),
        other => return Err(refuse(path, format_args!("the type `{other}`"))),
    };
    let mut null = false;
    let mut names = Vec::new();
    for t in list {
        let Some(t) = t.as_str() else {
            return Err(refuse(path, format_args!("the type `{t}`")));
        };
        if t == "null" {
            null = true;
        } else {
            names.push(type_name(t, path)?);
        }
    }
    if names.is_empty() && null {
        // `{"type": "null"}` alone: kept so a parent `anyOf` can turn it into `nullable`.
        return Ok((vec!["NULL".into()], false));
    }
    Ok((names, null))
}

fn type_name(t: &str, path: &str) -> Result<String, ProxyError> {
    match t {
        "string" | "number" | "integer" | "boolean" | "array" | "object" | "null" => {
            Ok(t.to_ascii_uppercase())
        }
        other => Err(refuse(path, format_args!("the type `{other}`"))),
    }
}

fn is_null_type(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("NULL")
}

/// Merges `from` into `into`: properties and `required` united, other members must
/// agree.
fn merge_into(
    into: &mut Map<String, Value>,
    from: Map<String, Value>,
    path: &str,
) -> Result<(), ProxyError> {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k)) {
            (_, None) => {
                into.insert(k, v);
            }
            ("properties", Some(Value::Object(have))) => {
                let Value::Object(add) = v else { continue };
                for (name, prop) in add {
                    if have.get(&name).is_some_and(|p| *p != prop) {
                        return Err(refuse(
                            path,
                            format_args!("conflicting definitions of property `{name}`"),
                        ));
                    }
                    have.insert(name, prop);
                }
            }
            ("required", Some(Value::Array(have))) => {
                for r in v.as_array().into_iter().flatten() {
                    if !have.contains(r) {
                        have.push(r.clone());
                    }
                }
            }
            ("description", Some(_)) => {
                into.insert(k, v);
            }
            ("nullable", Some(have)) => {
                // Merging a branch into a nullable wrapper: nullable stays.
                if v == Value::Bool(true) {
                    *have = v;
                }
            }
            (_, Some(have)) if *have == v => {}
            (_, Some(_)) => {
                return Err(refuse(path, format_args!("conflicting values of `{k}`")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
