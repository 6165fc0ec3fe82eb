//! Legacy JSON: parsing into a [`Node`] tree and printing a tree back as JSON.

use super::tree::Node;
use serde_json::{Map, Value};

/// Why a legacy JSON document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("the document is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("not valid JSON: {0}")]
    Malformed(String),
    #[error("nothing at the payload pointer `{0}`")]
    NoPayload(String),
    #[error("the payload must be a JSON object")]
    NotObject,
}

/// Parses `bytes` (UTF-8 JSON) and returns the object at `root` (a JSON pointer, `""` for the
/// whole document) as a tree. serde_json bounds nesting depth itself.
pub fn parse(bytes: &[u8], root: &str, max_bytes: usize) -> Result<Node, JsonError> {
    if bytes.len() > max_bytes {
        return Err(JsonError::TooLarge { limit: max_bytes });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| JsonError::Malformed(e.to_string()))?;
    let payload = value
        .pointer(root)
        .ok_or_else(|| JsonError::NoPayload(root.to_string()))?;
    if !payload.is_object() {
        return Err(JsonError::NotObject);
    }
    Ok(to_node(String::new(), payload, false))
}

fn to_node(name: String, value: &Value, array: bool) -> Node {
    let mut node = Node::named(name);
    node.array = array;
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            node.children.push(to_node(key.clone(), item, true));
                        }
                    }
                    other => node.children.push(to_node(key.clone(), other, false)),
                }
            }
        }
        Value::Null => {}
        // Arrays of arrays have no name to address them by; they are read as absent.
        Value::Array(_) => {}
        scalar => node.value = Some(scalar.clone()),
    }
    node
}

/// Prints a tree as JSON, placed at `root` (a JSON pointer) inside an otherwise empty
/// document.
pub fn write(node: &Node, root: &str) -> Vec<u8> {
    let payload = to_value(node);
    let mut doc = payload;
    for segment in root
        .split('/')
        .skip(1)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let key = segment.replace("~1", "/").replace("~0", "~");
        let mut map = Map::new();
        map.insert(key, doc);
        doc = Value::Object(map);
    }
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

fn to_value(node: &Node) -> Value {
    if node.children.is_empty() {
        return node.value.clone().unwrap_or(Value::Null);
    }
    let mut map = Map::new();
    for child in &node.children {
        let value = to_value(child);
        if child.array {
            match map
                .entry(child.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(items) => items.push(value),
                other => *other = Value::Array(vec![other.take(), value]),
            }
        } else {
            map.insert(child.name.clone(), value);
        }
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_objects_arrays_and_scalars() {
        let doc = json!({"data": {"SQRXM": "张三", "CL": [{"MC": "身份证"}], "FS": 2, "TS": true}});
        let bytes = serde_json::to_vec(&doc).unwrap();
        let node = parse(&bytes, "/data", 1 << 20).unwrap();
        assert_eq!(node.children.len(), 4);
        assert!(node.children[1].array);
        let back: Value = serde_json::from_slice(&write(&node, "/data")).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn bad_documents_are_refused() {
        assert!(matches!(parse(b"{", "", 100), Err(JsonError::Malformed(_))));
        assert!(matches!(parse(b"[1]", "", 100), Err(JsonError::NotObject)));
        assert!(matches!(
            parse(b"{}", "/data", 100),
            Err(JsonError::NoPayload(_))
        ));
        assert!(matches!(
            parse(&[b' '; 200], "", 100),
            Err(JsonError::TooLarge { .. })
        ));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(
            parse(deep.as_bytes(), "", 1 << 20),
            Err(JsonError::Malformed(_))
        ));
    }
}
