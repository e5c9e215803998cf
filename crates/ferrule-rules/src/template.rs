//! Templates in actions: `${name}` and `${a.b}` take fields of the rule's
//! output (the SELECT's columns); `${a[0]}` and `${a['key']}` index into
//! them. `$${` writes a literal `${`.
//!
//! In text, a missing field (or a null) renders as the empty string, a
//! string as itself, any other value as compact JSON. In a
//! [`JsonTemplate`], a string that is exactly one `${…}` becomes the value
//! itself (a number stays a number, an object stays an object, missing is
//! null); object keys are not templated.

use serde_json::{Map, Value};

/// One step into the output: `.name`, `['name']` or `[3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A `${…}` reference, as written and parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    source: String,
    first: String,
    steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Field),
}

/// A text template (topic, URL, header, body, device id).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; `Err` names what is wrong and where (a byte offset).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            literal.push_str(&rest[..i]);
            let after = &rest[i..];
            if let Some(tail) = after.strip_prefix("$${") {
                literal.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let start = text.len() - after.len();
                let Some(end) = tail.find('}') else {
                    return Err(format!("`${{` at byte {start} is not closed by `}}`"));
                };
                let field = parse_field(tail[..end].trim())
                    .map_err(|m| format!("`${{{}}}` at byte {start}: {m}", &tail[..end]))?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Field(field));
                rest = &tail[end + 1..];
            } else {
                literal.push('$');
                rest = &after[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template {
            source: text.to_owned(),
            parts,
        })
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it has no `${…}` (renders to itself, escapes resolved).
    pub fn is_constant(&self) -> bool {
        !self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }

    /// The `${…}` references, as written between the braces.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(f.source.as_str()),
            Part::Text(_) => None,
        })
    }

    /// Missing fields render as the empty string; strings as themselves,
    /// other values as JSON.
    pub fn render(&self, output: &Map<String, Value>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field(f) => match lookup(f, output) {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => out.push_str(s),
                    Some(other) => out.push_str(&other.to_string()),
                },
            }
        }
        out
    }

    /// The one field when the template is exactly `${x}`.
    fn only_field(&self) -> Option<&Field> {
        match self.parts.as_slice() {
            [Part::Field(f)] => Some(f),
            _ => None,
        }
    }
}

/// `name`, then `.name`, `[3]` or `['name']` steps.
fn parse_field(text: &str) -> Result<Field, String> {
    let name_end = text.find(['.', '[']).unwrap_or(text.len());
    let first = &text[..name_end];
    if first.is_empty() || first.contains(']') {
        return Err("a field name is expected".into());
    }
    let mut steps = Vec::new();
    let mut rest = &text[name_end..];
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix('.') {
            let end = tail.find(['.', '[']).unwrap_or(tail.len());
            if end == 0 || tail[..end].contains(']') {
                return Err("a field name is expected after `.`".into());
            }
            steps.push(Step::Key(tail[..end].to_owned()));
            rest = &tail[end..];
        } else if let Some(tail) = rest.strip_prefix("['") {
            let Some(end) = tail.find("']") else {
                return Err("`['` is not closed by `']`".into());
            };
            steps.push(Step::Key(tail[..end].to_owned()));
            rest = &tail[end + 2..];
        } else if let Some(tail) = rest.strip_prefix('[') {
            let Some(end) = tail.find(']') else {
                return Err("`[` is not closed by `]`".into());
            };
            let index = tail[..end]
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("`{}` is not an array index", &tail[..end]))?;
            steps.push(Step::Index(index));
            rest = &tail[end + 1..];
        } else {
            return Err(format!("unexpected `{rest}`"));
        }
    }
    Ok(Field {
        source: text.to_owned(),
        first: first.to_owned(),
        steps,
    })
}

fn lookup<'a>(field: &Field, output: &'a Map<String, Value>) -> Option<&'a Value> {
    let mut at = output.get(&field.first)?;
    for step in &field.steps {
        at = match (step, at) {
            (Step::Key(k), Value::Object(map)) => map.get(k)?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(at)
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// No template inside: cloned as is.
    Constant(Value),
    /// A string that is exactly `${x}`: the value itself.
    Field(Template),
    Text(Template),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// A JSON template: every string in it is a text template, and a string
/// that is exactly `${x}` becomes the value of `x` (a number stays a number).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonTemplate(Node);

impl JsonTemplate {
    pub fn parse(value: &Value) -> Result<Self, String> {
        Ok(JsonTemplate(parse_node(value)?))
    }

    pub fn render(&self, output: &Map<String, Value>) -> Value {
        render_node(&self.0, output)
    }
}

fn parse_node(value: &Value) -> Result<Node, String> {
    let node = match value {
        Value::String(s) => {
            let t = Template::parse(s)?;
            if t.is_constant() {
                // Escapes resolved: `$${x}` is the text `${x}`.
                Node::Constant(Value::String(t.render(&Map::new())))
            } else if t.only_field().is_some() {
                Node::Field(t)
            } else {
                Node::Text(t)
            }
        }
        Value::Array(items) => Node::Array(items.iter().map(parse_node).collect::<Result<_, _>>()?),
        Value::Object(map) => Node::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), parse_node(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Ok(Node::Constant(other.clone())),
    };
    // A subtree with nothing to fill in is kept as one value.
    Ok(match node {
        Node::Array(items) if items.iter().all(|n| matches!(n, Node::Constant(_))) => {
            Node::Constant(value_of(Node::Array(items)))
        }
        Node::Object(fields) if fields.iter().all(|(_, n)| matches!(n, Node::Constant(_))) => {
            Node::Constant(value_of(Node::Object(fields)))
        }
        other => other,
    })
}

/// A node known to hold only constants, as a value.
fn value_of(node: Node) -> Value {
    render_node(&node, &Map::new())
}

fn render_node(node: &Node, output: &Map<String, Value>) -> Value {
    match node {
        Node::Constant(v) => v.clone(),
        Node::Field(t) => t
            .only_field()
            .and_then(|f| lookup(f, output))
            .cloned()
            .unwrap_or(Value::Null),
        Node::Text(t) => Value::String(t.render(output)),
        Node::Array(items) => Value::Array(items.iter().map(|n| render_node(n, output)).collect()),
        Node::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, n)| (k.clone(), render_node(n, output)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
