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
    let mut value: Value =
        serde_json::from_slice(bytes).map_err(|e| JsonError::Malformed(e.to_string()))?;
    let payload = value
        .pointer_mut(root)
        .ok_or_else(|| JsonError::NoPayload(root.to_string()))?;
    if !payload.is_object() {
        return Err(JsonError::NotObject);
    }
    Ok(to_node(String::new(), payload.take(), false))
}

/// The tree of a parsed value, which it takes apart: names and text are moved, not copied.
fn to_node(name: String, value: Value, array: bool) -> Node {
    let mut node = Node::named(name);
    node.array = array;
    match value {
        Value::Object(map) => {
            node.children.reserve(map.len());
            for (key, v) in map {
                match v {
                    Value::Array(items) => {
                        for item in items {
                            node.children.push(to_node(key.clone(), item, true));
                        }
                    }
                    other => node.children.push(to_node(key, other, false)),
                }
            }
        }
        Value::Null => {}
        // Arrays of arrays have no name to address them by; they are read as absent.
        Value::Array(_) => {}
        scalar => node.value = Some(scalar),
    }
    node
}

/// Prints a tree as JSON, placed at `root` (a JSON pointer) inside an otherwise empty
/// document.
pub fn write(node: &Node, root: &str) -> Vec<u8> {
    place(to_value(node), root)
}

/// As [`write`], taking the tree apart instead of copying its names and values.
pub fn write_owned(node: Node, root: &str) -> Vec<u8> {
    place(into_value(node), root)
}

fn place(payload: Value, root: &str) -> Vec<u8> {
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

/// [`to_value`], moving instead of copying.
fn into_value(node: Node) -> Value {
    if node.children.is_empty() {
        return node.value.unwrap_or(Value::Null);
    }
    let mut map = Map::new();
    for mut child in node.children {
        let (name, array) = (std::mem::take(&mut child.name), child.array);
        let value = into_value(child);
        if array {
            match map.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(items) => items.push(value),
                other => *other = Value::Array(vec![other.take(), value]),
            }
        } else {
            map.insert(name, value);
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

    fn tree() -> impl proptest::strategy::Strategy<Value = Node> {
        use proptest::prelude::*;
        let leaf = (
            "[ab名]{1,2}",
            proptest::option::of(prop_oneof![
                "[a-z张]{0,3}".prop_map(Value::String),
                any::<i32>().prop_map(Value::from),
                any::<bool>().prop_map(Value::Bool),
                Just(Value::Null),
            ]),
            any::<bool>(),
        )
            .prop_map(|(name, value, array)| Node {
                name,
                value,
                array,
                ..Node::default()
            });
        leaf.prop_recursive(4, 40, 6, |inner| {
            (inner.clone(), proptest::collection::vec(inner, 0..6)).prop_map(|(mut n, children)| {
                n.children = children;
                n
            })
        })
    }

    proptest::proptest! {
        /// Taking the tree apart prints exactly what copying it does, repeated and clashing
        /// names included.
        #[test]
        fn writing_an_owned_tree_prints_what_writing_a_borrowed_one_does(
            node in tree(),
            root in proptest::prop_oneof![
                proptest::strategy::Just(""),
                proptest::strategy::Just("/data"),
                proptest::strategy::Just("/a~1b/c"),
            ],
        ) {
            proptest::prop_assert_eq!(write_owned(node.clone(), root), write(&node, root));
        }
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
