//! The legacy document as a tree both XML and JSON parse into and print from, and the paths a
//! mapping uses to address it.

use serde_json::Value;

/// One element (XML) or member (JSON) of a legacy document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// XML: `prefix:local` with the mapping's own prefix for the element's namespace (plain
    /// `local` in the default or no namespace). JSON: the member name. The root's name is the
    /// document element's.
    pub name: String,
    /// XML attributes, named like elements.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    /// The scalar content: XML text (always a string), or a JSON string, number or boolean.
    pub value: Option<Value>,
    /// XML: write the text as CDATA.
    pub cdata: bool,
    /// JSON: this member is one element of an array, even when it is the only one.
    pub array: bool,
}

impl Node {
    pub fn named(name: impl Into<String>) -> Node {
        Node {
            name: name.into(),
            ..Node::default()
        }
    }

    /// The node's scalar content as text, if it has any.
    pub fn text(&self) -> Option<String> {
        match &self.value {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        }
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child called `name`, created at the end when there is none.
    pub fn child_or_insert(&mut self, name: &str) -> &mut Node {
        match self.children.iter().position(|c| c.name == name) {
            Some(i) => &mut self.children[i],
            None => self.push_child(Node::named(name)),
        }
    }

    pub fn push_child(&mut self, node: Node) -> &mut Node {
        self.children.push(node);
        self.children.last_mut().expect("just pushed")
    }
}

/// One step of a legacy path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Child(String),
    Attr(String),
}

/// A path into a legacy document, relative to the element a field is evaluated in:
/// `申请人/证件号码`, `材料/@编号`, or `.` for the element itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyPath {
    pub steps: Vec<Step>,
}

impl LegacyPath {
    /// Parses `a/b/@c`. An attribute may only be the last step.
    pub fn parse(text: &str) -> Result<LegacyPath, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a legacy path cannot be empty (use `.` for the element itself)".into());
        }
        if text == "." {
            return Ok(LegacyPath { steps: Vec::new() });
        }
        let parts: Vec<&str> = text.split('/').collect();
        let mut steps = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            if part.is_empty() {
                return Err(format!("empty step in `{text}`"));
            }
            if let Some(attr) = part.strip_prefix('@') {
                if i + 1 != parts.len() {
                    return Err(format!(
                        "attribute `{part}` must be the last step of `{text}`"
                    ));
                }
                check_name(attr)?;
                steps.push(Step::Attr(attr.to_string()));
            } else {
                check_name(part)?;
                steps.push(Step::Child(part.to_string()));
            }
        }
        Ok(LegacyPath { steps })
    }

    pub fn ends_in_attr(&self) -> bool {
        matches!(self.steps.last(), Some(Step::Attr(_)))
    }

    /// The element steps and the final attribute, if any.
    pub fn split_attr(&self) -> (&[Step], Option<&str>) {
        match self.steps.split_last() {
            Some((Step::Attr(a), rest)) => (rest, Some(a.as_str())),
            _ => (&self.steps, None),
        }
    }

    /// Every prefix the path's names use.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| {
            let name = match s {
                Step::Child(n) | Step::Attr(n) => n,
            };
            name.split_once(':').map(|(p, _)| p)
        })
    }
}

impl std::fmt::Display for LegacyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.steps.is_empty() {
            return write!(f, ".");
        }
        for (i, s) in self.steps.iter().enumerate() {
            if i > 0 {
                write!(f, "/")?;
            }
            match s {
                Step::Child(n) => write!(f, "{n}")?,
                Step::Attr(n) => write!(f, "@{n}")?,
            }
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let bad = name.is_empty()
        || name.starts_with(':')
        || name.ends_with(':')
        || name.matches(':').count() > 1
        || name.chars().any(|c| {
            c.is_whitespace() || matches!(c, '<' | '>' | '&' | '"' | '\'' | '=' | '[' | ']' | '@')
        });
    if bad {
        Err(format!("`{name}` is not an element or attribute name"))
    } else {
        Ok(())
    }
}

/// What a path selects: elements, and at the end possibly an attribute's value.
pub enum Selected<'a> {
    Node(&'a Node),
    Attr(&'a str),
}

impl Selected<'_> {
    pub fn scalar(&self) -> Option<Value> {
        match self {
            Selected::Node(n) => n.value.clone().filter(|v| !v.is_null()),
            Selected::Attr(a) => Some(Value::String((*a).to_string())),
        }
    }
}

/// Everything `path` selects under `ctx`, in document order.
pub fn select<'a>(ctx: &'a Node, path: &LegacyPath) -> Vec<Selected<'a>> {
    let (elements, attr) = path.split_attr();
    let mut found = Vec::new();
    select_into(ctx, elements, attr, &mut found);
    found
}

/// Depth first, which is document order, into one list.
fn select_into<'a>(
    node: &'a Node,
    steps: &[Step],
    attr: Option<&str>,
    found: &mut Vec<Selected<'a>>,
) {
    match steps.split_first() {
        Some((Step::Child(name), rest)) => {
            for child in node.children.iter().filter(|c| &c.name == name) {
                select_into(child, rest, attr, found);
            }
        }
        Some((Step::Attr(_), rest)) => select_into(node, rest, attr, found),
        None => match attr {
            Some(a) => found.extend(node.attr(a).map(Selected::Attr)),
            None => found.push(Selected::Node(node)),
        },
    }
}

/// The element at `steps` under `ctx`, creating what is missing; with `append`, the last step
/// always creates a new element (the next item of a repeated element).
pub fn element_at<'a>(ctx: &'a mut Node, steps: &[Step], append: bool) -> &'a mut Node {
    let mut node = ctx;
    for (i, step) in steps.iter().enumerate() {
        let Step::Child(name) = step else { continue };
        node = if append && i + 1 == steps.len() {
            node.push_child(Node::named(name.as_str()))
        } else {
            node.child_or_insert(name)
        };
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_print() {
        let p = LegacyPath::parse("ns:申请人/证件/@类型").unwrap();
        assert_eq!(p.to_string(), "ns:申请人/证件/@类型");
        assert!(p.ends_in_attr());
        assert_eq!(p.prefixes().collect::<Vec<_>>(), vec!["ns"]);
        assert!(LegacyPath::parse("a/@b/c").is_err());
        assert!(LegacyPath::parse("a//b").is_err());
        assert!(LegacyPath::parse("a b").is_err());
        assert_eq!(LegacyPath::parse(".").unwrap().steps, vec![]);
    }

    #[test]
    fn select_flattens_repeated_elements() {
        let mut root = Node::named("r");
        for v in ["1", "2"] {
            let list = element_at(&mut root, &[Step::Child("list".into())], false);
            let item = list.push_child(Node::named("item"));
            item.value = Some(Value::String(v.into()));
            item.attrs.push(("id".into(), format!("i{v}")));
        }
        let items = select(&root, &LegacyPath::parse("list/item").unwrap());
        assert_eq!(items.len(), 2);
        let ids: Vec<Option<Value>> = select(&root, &LegacyPath::parse("list/item/@id").unwrap())
            .iter()
            .map(Selected::scalar)
            .collect();
        assert_eq!(ids, vec![Some("i1".into()), Some("i2".into())]);
    }
}
