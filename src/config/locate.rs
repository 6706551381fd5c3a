//! Where a key stands in a YAML file: a small indentation scanner that maps key paths
//! (`delivery.retry[2]`) to line and column, so that errors found after parsing can still point
//! at the line to edit. It understands block mappings and sequences, which is how configuration
//! files are written; values inside flow collections (`[a, b]`) are located at their key.
//! Must not import anything of ours outside `config`.

use std::fmt;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the document, printed as `delivery.retry[2]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(pub Vec<Seg>);

impl KeyPath {
    pub fn key(&self, k: &str) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Key(k.to_string()));
        KeyPath(v)
    }
    pub fn index(&self, i: usize) -> KeyPath {
        let mut v = self.0.clone();
        v.push(Seg::Index(i));
        KeyPath(v)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in &self.0 {
            match seg {
                Seg::Key(k) if first => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Every key and sequence item of a document with its 1-based line and column.
#[derive(Debug, Default)]
pub struct Locations {
    pub entries: Vec<(KeyPath, usize, usize)>,
}

impl Locations {
    /// The position of `path`, or of its closest located ancestor.
    pub fn find(&self, path: &KeyPath) -> Option<(usize, usize)> {
        let mut best: Option<(usize, usize, usize)> = None;
        for (p, line, col) in &self.entries {
            if p.0.len() <= path.0.len()
                && path.0[..p.0.len()] == p.0[..]
                && best.is_none_or(|(len, _, _)| p.0.len() > len)
            {
                best = Some((p.0.len(), *line, *col));
            }
        }
        best.map(|(_, l, c)| (l, c))
    }
}

struct Frame {
    indent: usize,
    seg: Seg,
}

/// Scan a YAML document for the positions of its keys and sequence items.
pub fn scan(text: &str) -> Locations {
    let mut out = Locations::default();
    let mut stack: Vec<Frame> = Vec::new();
    for (lineno, raw_line) in text.lines().enumerate() {
        let line_no = lineno + 1;
        let trimmed = raw_line.trim_start_matches(' ');
        if trimmed.is_empty()
            || trimmed.starts_with('#')
            || trimmed.starts_with("---")
            || trimmed.starts_with("...")
        {
            continue;
        }
        let mut indent = raw_line.len() - trimmed.len();
        let mut content = trimmed;
        // Sequence items, possibly nested on one line ("- - a").
        while content == "-" || content.starts_with("- ") {
            // A sibling item of the same sequence is still on the stack at this indent: anything
            // at this indent or shallower that is not an item would have popped it.
            let index = stack
                .iter()
                .rev()
                .find(|f| f.indent == indent && matches!(f.seg, Seg::Index(_)))
                .map_or(0, |f| match f.seg {
                    Seg::Index(n) => n + 1,
                    Seg::Key(_) => 0,
                });
            stack.retain(|f| {
                f.indent < indent || (f.indent == indent && matches!(f.seg, Seg::Key(_)))
            });
            stack.push(Frame {
                indent,
                seg: Seg::Index(index),
            });
            out.entries.push((path_of(&stack), line_no, indent + 1));
            let rest = content[1..].trim_start_matches(' ');
            indent += content.len() - rest.len();
            content = rest;
            if content.is_empty() {
                break;
            }
        }
        if let Some(key) = key_of(content) {
            stack.retain(|f| f.indent < indent);
            stack.push(Frame {
                indent,
                seg: Seg::Key(key),
            });
            out.entries.push((path_of(&stack), line_no, indent + 1));
        }
    }
    out
}

fn path_of(stack: &[Frame]) -> KeyPath {
    KeyPath(stack.iter().map(|f| f.seg.clone()).collect())
}

/// The key of a `key: value` or `key:` line, unquoted.
fn key_of(content: &str) -> Option<String> {
    let (key, rest) = if let Some(q) = content.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], &q[end + 1..])
    } else if let Some(q) = content.strip_prefix('\'') {
        let end = q.find('\'')?;
        (&q[..end], &q[end + 1..])
    } else {
        let pos = content.find(':')?;
        let key = &content[..pos];
        if key.is_empty() || key.contains(' ') {
            return None;
        }
        (key, &content[pos..])
    };
    let rest = rest.trim_start_matches(' ');
    let after = rest.strip_prefix(':')?;
    if after.is_empty() || after.starts_with(' ') || after.starts_with('\t') {
        if key.starts_with('{') || key.starts_with('[') {
            return None;
        }
        Some(key.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(locs: &Locations, path: &str) -> Option<usize> {
        locs.entries
            .iter()
            .find(|(p, _, _)| p.to_string() == path)
            .map(|(_, l, _)| *l)
    }

    #[test]
    fn maps_nested_keys_and_items() {
        let doc = "hostname: a\nlisteners:\n  - address: x\n    tls: none\n  - unix: /s\nclients:\n- user: u\n  allow_from: [a]\n- network: n\ndkim:\n  domains:\n    example.com:\n      - selector: s\n        private_key: k\n";
        let l = scan(doc);
        assert_eq!(at(&l, "hostname"), Some(1));
        assert_eq!(at(&l, "listeners[0].address"), Some(3));
        assert_eq!(at(&l, "listeners[0].tls"), Some(4));
        assert_eq!(at(&l, "listeners[1].unix"), Some(5));
        assert_eq!(at(&l, "clients[0].allow_from"), Some(8));
        assert_eq!(at(&l, "clients[1].network"), Some(9));
        assert_eq!(at(&l, "dkim.domains.example.com[0].private_key"), Some(14));
        let p = KeyPath::default()
            .key("clients")
            .index(0)
            .key("allow_from")
            .index(3);
        assert_eq!(l.find(&p), Some((8, 3)));
    }
}
