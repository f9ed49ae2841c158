//! Maps a path inside a YAML document (`routes[2].upstream[0]`, `session.idle_timeout`)
//! to the 1-based line and column where that node starts, so that errors found after
//! deserialisation can point at the offending text.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// 1-based (line, column).
pub(crate) type Pos = (usize, usize);

#[derive(Debug, Clone)]
enum Node {
    Scalar(Pos),
    Seq(Pos, Vec<Node>),
    /// Entries: key text, key position, value.
    Map(Pos, Vec<(String, Pos, Node)>),
}

impl Node {
    fn pos(&self) -> Pos {
        match self {
            Node::Scalar(p) | Node::Seq(p, _) | Node::Map(p, _) => *p,
        }
    }
}

/// One step of a path.
#[derive(Debug, PartialEq, Eq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `routes[2].upstream[0]` into `routes`, `2`, `upstream`, `0`.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(n) = idx.trim_end_matches(']').parse() {
                out.push(Step::Index(n));
            }
        }
    }
    out
}

/// The positions of every node of one YAML document.
#[derive(Debug)]
pub(crate) struct Locator {
    root: Option<Node>,
}

impl Locator {
    /// Parses `text`; a document that does not parse yields a locator that knows nothing.
    pub(crate) fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        match parser.load(&mut builder, false) {
            Ok(()) => Locator { root: builder.root },
            Err(_) => Locator { root: None },
        }
    }

    fn node(&self, path: &str) -> Option<&Node> {
        let mut node = self.root.as_ref()?;
        for step in steps(path) {
            node = match (step, node) {
                (Step::Key(k), Node::Map(_, entries)) => {
                    &entries.iter().find(|(key, _, _)| key == k)?.2
                }
                (Step::Index(i), Node::Seq(_, items)) => items.get(i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// Where the node at `path` starts, if it exists.
    pub(crate) fn exact(&self, path: &str) -> Option<Pos> {
        self.node(path).map(Node::pos)
    }

    /// Where the node at `path` starts; else its nearest existing ancestor; else 1:1.
    pub(crate) fn find(&self, path: &str) -> Pos {
        let mut path = path;
        while !path.is_empty() {
            if let Some(pos) = self.exact(path) {
                return pos;
            }
            path = parent(path);
        }
        (1, 1)
    }
}

/// `routes[2].upstream[0]` → `routes[2].upstream` → `routes[2]` → `routes` → ``.
fn parent(path: &str) -> &str {
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    &path[..cut]
}

enum Partial {
    Seq(Pos, usize, Vec<Node>),
    Map(Pos, usize, Vec<(String, Pos, Node)>, Option<(String, Pos)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Partial>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
}

fn pos(mark: Marker) -> Pos {
    // yaml-rust2 lines are 1-based and columns 0-based.
    (mark.line(), mark.col() + 1)
}

impl Builder {
    /// Adds a finished node to the innermost open collection; `text` is the scalar's value,
    /// used when the node is a mapping key.
    fn push(&mut self, node: Node, text: Option<String>) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Partial::Seq(_, _, items)) => items.push(node),
            Some(Partial::Map(_, _, entries, pending)) => match pending.take() {
                Some((key, key_pos)) => entries.push((key, key_pos, node)),
                None => *pending = Some((text.unwrap_or_default(), node.pos())),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, _, anchor, _) => {
                let node = Node::Scalar(pos(mark));
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node, Some(value));
            }
            Event::Alias(id) => {
                // An alias points at the alias itself, with the anchored node's shape.
                let node = match self.anchors.get(&id) {
                    Some(Node::Seq(_, items)) => Node::Seq(pos(mark), items.clone()),
                    Some(Node::Map(_, entries)) => Node::Map(pos(mark), entries.clone()),
                    _ => Node::Scalar(pos(mark)),
                };
                self.push(node, None);
            }
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Partial::Seq(pos(mark), anchor, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                self.stack
                    .push(Partial::Map(pos(mark), anchor, Vec::new(), None));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Partial::Seq(p, a, items)) => (Node::Seq(p, items), a),
                    Some(Partial::Map(p, a, entries, _)) => {
                        // A block mapping's start mark lies after its first key; point at the key.
                        let p = entries
                            .first()
                            .map_or(p, |(_, key_pos, _)| (*key_pos).min(p));
                        (Node::Map(p, entries), a)
                    }
                    None => return,
                };
                if anchor != 0 {
                    self.anchors.insert(anchor, node.clone());
                }
                self.push(node, None);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
version: 1
session:
  idle_timeout: 30m
routes:
  - name: wiki
    upstream: [\"127.0.0.1:3000\", \"127.0.0.1:3001\"]
  - name: app
    upstream:
      - 127.0.0.1:4000
";

    #[test]
    fn finds_values_keys_and_items() {
        let loc = Locator::new(DOC);
        assert_eq!(loc.find("version"), (1, 10));
        assert_eq!(loc.find("session.idle_timeout"), (3, 17));
        assert_eq!(loc.find("routes[0]"), (5, 5));
        assert_eq!(loc.find("routes[0].upstream[1]"), (6, 34));
        assert_eq!(loc.find("routes[1].upstream[0]"), (9, 9));
    }

    #[test]
    fn falls_back_to_the_nearest_ancestor() {
        let loc = Locator::new(DOC);
        assert_eq!(loc.find("routes[1].hosts[0]"), (7, 5));
        assert_eq!(loc.find("nothing.here"), (1, 1));
        assert_eq!(Locator::new(": : [").find("version"), (1, 1));
    }

    #[test]
    fn aliases_resolve() {
        let loc = Locator::new("a: &x\n  b: 1\nc: *x\n");
        assert_eq!(loc.exact("a.b"), Some((2, 6)));
        assert_eq!(loc.exact("c.b"), Some((2, 6)));
        assert_eq!(loc.exact("c"), Some((3, 4)));
    }
}
