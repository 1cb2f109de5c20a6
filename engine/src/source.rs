//! Where each value of a YAML file sits, so errors can name a line and column.
//!
//! serde_yaml reports locations only for syntax errors; once a document is a
//! `serde_yaml::Value` (which we need, because `kind:` decides the type of the
//! rest of a stage) positions are gone. So we parse the text a second time with
//! yaml-rust2's event parser and remember the position of every key and scalar
//! by its path (`stages.train.params.lr`). Errors from typed deserialization
//! carry such a path (serde_path_to_error), and this map turns it into
//! `file:line:col`.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the pipeline file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// Positions of keys and values, keyed by dotted path (`a.b[2].c`).
#[derive(Debug, Default)]
pub struct SourceMap {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
    /// Exact paths that stand for another (a matrix variant's field whose
    /// value came from a `matrix:` entry -> that entry).
    redirects: HashMap<String, String>,
    /// Path prefixes that stand for another (`stages.a@x=1` -> `stages.a`).
    aliases: Vec<(String, String)>,
}

impl SourceMap {
    /// Builds the map; on a syntax error returns an empty map (serde_yaml
    /// reports syntax errors itself, with their location).
    pub fn parse(text: &str) -> SourceMap {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return SourceMap::default();
        }
        builder.map
    }

    /// Position of the key at `path` (the place to point at for "unknown
    /// field" or "bad reference"); falls back to its value, then to the nearest
    /// ancestor that is known.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.lookup(path, true)
    }

    /// Position of the value at `path` (the place to point at for "wrong
    /// type"); falls back to its key, then to the nearest known ancestor.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.lookup(path, false)
    }

    /// Positions under `from` (a generated stage) are those under `to`.
    pub fn alias(&mut self, from: &str, to: &str) {
        self.aliases.push((from.to_string(), to.to_string()));
    }

    /// The position of `from` is that of `to`.
    pub fn redirect(&mut self, from: &str, to: &str) {
        self.redirects.insert(from.to_string(), to.to_string());
    }

    /// `path` in terms of the file's own paths.
    fn original(&self, path: &str) -> String {
        if let Some(to) = self.redirects.get(path) {
            return to.clone();
        }
        for (from, to) in &self.aliases {
            if let Some(rest) = path.strip_prefix(from.as_str()) {
                if rest.is_empty() || rest.starts_with(['.', '[']) {
                    return format!("{to}{rest}");
                }
            }
        }
        path.to_string()
    }

    fn lookup(&self, path: &str, key_first: bool) -> Option<Pos> {
        let path = self.original(path);
        let mut p = path.as_str();
        loop {
            let (a, b) = if key_first {
                (&self.keys, &self.values)
            } else {
                (&self.values, &self.keys)
            };
            if let Some(pos) = a.get(p).or_else(|| b.get(p)) {
                return Some(*pos);
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }
}

/// Joins a child key onto a dotted path.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    map: SourceMap,
    stack: Vec<Frame>,
}

impl Builder {
    /// The path a new node at this point of the stream gets, or `None` when the
    /// node is a mapping key.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
        }
    }

    fn pos(mark: Marker) -> Pos {
        Pos { line: mark.line(), col: mark.col() + 1 }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => match self.next_path() {
                Some(path) => {
                    self.map.values.entry(path).or_insert(Self::pos(mark));
                }
                None => {
                    if let Some(Frame::Map { path, key }) = self.stack.last_mut() {
                        let full = join(path, &text);
                        self.map.keys.entry(full).or_insert(Self::pos(mark));
                        *key = Some(text);
                    }
                }
            },
            Event::MappingStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.next_path().unwrap_or_default();
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.next_path();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: demo\nstages:\n  gen:\n    kind: command\n    outputs: [a, b]\n    params:\n      lr: 0.1\n";

    #[test]
    fn keys_and_values_have_positions() {
        let m = SourceMap::parse(DOC);
        assert_eq!(m.key("stages.gen.params.lr"), Some(Pos { line: 7, col: 7 }));
        assert_eq!(m.value("stages.gen.params.lr"), Some(Pos { line: 7, col: 11 }));
        assert_eq!(m.value("stages.gen.outputs[1]"), Some(Pos { line: 5, col: 18 }));
    }

    #[test]
    fn unknown_paths_fall_back_to_the_nearest_ancestor() {
        let m = SourceMap::parse(DOC);
        assert_eq!(m.key("stages.gen.params.nope"), m.key("stages.gen.params"));
        assert_eq!(m.key("stages.gen.params.lr.deeper[3]"), m.key("stages.gen.params.lr"));
    }
}
