//! The operator documentation and the production config template must not drift from the code:
//! every key of `config::schema::KEYS` is documented in docs/configuration.md and present in
//! config/production.yaml, and that template parses as a valid configuration.

use dkim_relay::config::schema::KEYS;
use dkim_relay::config::Settings;
use std::path::{Path, PathBuf};

fn repo_file(rel: &str) -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    (path, text)
}

/// Top-level keys: patterns without a dot or a sequence marker.
fn top_level_keys() -> Vec<&'static str> {
    KEYS.iter()
        .map(|(p, _, _)| *p)
        .filter(|p| !p.contains('.') && !p.contains("[]"))
        .collect()
}

#[test]
fn configuration_reference_documents_every_key() {
    let (_, doc) = repo_file("docs/configuration.md");
    let missing: Vec<&str> = KEYS
        .iter()
        .map(|(p, _, _)| *p)
        .filter(|p| !doc.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document these KEYS patterns (write each as `pattern`): {missing:?}"
    );
}

#[test]
fn production_config_is_valid() {
    let (path, text) = repo_file("config/production.yaml");
    if let Err(errors) = Settings::parse(&path, &text) {
        panic!("config/production.yaml does not validate:\n{errors}");
    }
}

#[test]
fn production_config_has_every_top_level_section() {
    let (_, text) = repo_file("config/production.yaml");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let map = doc.as_mapping().expect("a mapping at the top");
    let missing: Vec<&str> = top_level_keys()
        .into_iter()
        .filter(|k| !map.contains_key(serde_yaml_ng::Value::String(k.to_string())))
        .collect();
    assert!(
        missing.is_empty(),
        "config/production.yaml lacks top-level sections {missing:?}"
    );
}

#[test]
fn production_config_mentions_every_key() {
    // Alternatives (relay_host, directory, nameservers) may be commented out, but every key is
    // written somewhere in the template, as `name:`.
    let (_, text) = repo_file("config/production.yaml");
    let missing: Vec<&str> = KEYS
        .iter()
        .map(|(p, _, _)| *p)
        .filter(|p| {
            let last = p.rsplit('.').next().unwrap_or(p).trim_end_matches("[]");
            last != "*" && !text.contains(&format!("{last}:"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "config/production.yaml does not mention these keys: {missing:?}"
    );
}

#[test]
fn kubernetes_configmap_config_is_valid() {
    let (path, text) = repo_file("contrib/kubernetes/configmap.yaml");
    let cm: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let config = cm["data"]["config.yaml"]
        .as_str()
        .expect("data.config.yaml in the ConfigMap");
    if let Err(errors) = Settings::parse(&path, config) {
        panic!("the config in contrib/kubernetes/configmap.yaml does not validate:\n{errors}");
    }
}

#[test]
fn documentation_links_to_files_that_exist() {
    // Every `docs/...`, `contrib/...`, `bench/...`, `scripts/...` and `tests/...` path named in
    // the operator documentation and the READMEs exists.
    let mut files: Vec<String> = [
        "certs/README.md",
        "README.md",
        "bench/README.md",
        "bench/experiments/README.md",
    ]
    .map(String::from)
    .to_vec();
    let docs_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for entry in std::fs::read_dir(&docs_dir).expect("docs/") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut broken = Vec::new();
    for file in &files {
        let (_, text) = repo_file(file);
        for prefix in ["docs/", "contrib/", "bench/", "scripts/", "tests/"] {
            let mut rest = text.as_str();
            while let Some(pos) = rest.find(prefix) {
                let before = rest[..pos].chars().next_back();
                let tail = &rest[pos..];
                let end = tail
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
                    .unwrap_or(tail.len());
                let path = tail[..end].trim_end_matches('.');
                rest = &tail[end..];
                // Only paths that start a word (not ".../usr/share/doc/...", not URLs).
                if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '.') {
                    continue;
                }
                let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
                if !full.exists() {
                    broken.push(format!("{file}: {path}"));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "documentation names missing files: {broken:#?}"
    );
}

/// Every Rust file of `src/`: its module path (`inbound/listener.rs` -> `["inbound",
/// "listener"]`, `inbound/mod.rs` -> `["inbound"]`) and its code without `//` comments, so a
/// name in prose proves nothing.
fn sources() -> Vec<(Vec<String>, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("src/") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).expect("under src/");
            let mut module: Vec<String> = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if module
                .last()
                .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
            {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("source");
            let code: String = text
                .lines()
                .map(|l| match l.find("//") {
                    Some(i) => &l[..i],
                    None => l,
                })
                .collect::<Vec<_>>()
                .join("\n");
            (module, code)
        })
        .collect()
}

fn is_ident(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Does `code` define `fn name`?
fn defines_fn(code: &str, name: &str) -> bool {
    ["(", "<"]
        .iter()
        .any(|next| code.contains(&format!("fn {name}{next}")))
}

/// Does `code` implement (or declare) the type or trait `name`?
fn implements(code: &str, name: &str) -> bool {
    code.lines().any(|line| {
        let line = line.trim_start();
        let tokens: Vec<&str> = line
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|t| !t.is_empty())
            .collect();
        (line.starts_with("impl") && tokens.contains(&name))
            || line.contains(&format!("trait {name} "))
            || line.contains(&format!("trait {name}:"))
    })
}

/// `module::function`, `Type::method`, `module::Type::method` or `module::Type`: is it in
/// `src/`? The module may be given by its last names only (`listener::serve`).
fn resolves(path: &str, files: &[(Vec<String>, String)]) -> bool {
    let segs: Vec<&str> = path.split("::").collect();
    let capital = |s: &str| s.starts_with(|c: char| c.is_ascii_uppercase());
    let (item, rest) = segs.split_last().expect("a path");
    let (ty, module) = match rest.split_last() {
        Some((t, m)) if capital(t) => (Some(*t), m),
        _ => (None, rest),
    };
    let in_scope = |m: &[String]| {
        module.is_empty()
            || m.windows(module.len())
                .any(|w| w.iter().zip(module).all(|(a, b)| a == b))
    };
    files
        .iter()
        .filter(|(m, _)| in_scope(m))
        .any(|(_, code)| match ty {
            Some(t) => implements(code, t) && defines_fn(code, item),
            None if capital(item) => ["struct", "enum", "trait", "type"]
                .iter()
                .any(|k| code.contains(&format!("{k} {item}"))),
            None => defines_fn(code, item),
        })
}

#[test]
fn flow_names_functions_that_exist() {
    let (_, flow) = repo_file("docs/flow.md");
    let files = sources();
    let named: Vec<&str> = flow
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.contains("::") && s.split("::").all(is_ident))
        .collect();
    assert!(
        named.len() >= 40,
        "docs/flow.md names only {} functions: {named:?}",
        named.len()
    );
    let missing: Vec<&&str> = named.iter().filter(|p| !resolves(p, &files)).collect();
    assert!(
        missing.is_empty(),
        "docs/flow.md names what src/ does not define (as `fn name` in that module, or a method \
         in an impl of that type): {missing:?}"
    );
    // The check can fail.
    assert!(!resolves("listener::no_such_step", &files));
    assert!(!resolves("Session::feed", &files));
}

/// What a module may import, as the crate doc's *Layering* section says.
enum Rule {
    Only(Vec<String>),
    Not(Vec<String>),
}

fn layering_rules() -> Vec<(String, Rule)> {
    let (_, lib) = repo_file("src/lib.rs");
    let ticked = |s: &str| -> Vec<String> {
        s.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    };
    let section = lib
        .split("//! # Layering")
        .nth(1)
        .expect("src/lib.rs has a # Layering section");
    let mut rules = Vec::new();
    for line in section.lines().skip(1).map_while(|l| l.strip_prefix("//!")) {
        let Some(rule) = line.strip_prefix(" - ") else {
            continue;
        };
        let (who, what) = rule.split_once(": ").expect("- `module`: rule");
        let rule = if what.starts_with("nothing of ours") {
            Rule::Only(Vec::new())
        } else if let Some(list) = what.strip_prefix("only ") {
            Rule::Only(ticked(list))
        } else if let Some(list) = what.strip_prefix("not ") {
            Rule::Not(ticked(list))
        } else {
            panic!("a layering rule says `nothing of ours`, `only ...` or `not ...`: {line}");
        };
        for m in ticked(who) {
            let rule = match &rule {
                Rule::Only(l) => Rule::Only(l.clone()),
                Rule::Not(l) => Rule::Not(l.clone()),
            };
            rules.push((m, rule));
        }
    }
    rules
}

#[test]
fn layering_rules_hold() {
    let rules = layering_rules();
    assert!(rules.len() >= 20, "too few layering rules parsed");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (m, _) in &rules {
        assert!(
            src.join(format!("{m}.rs")).exists() || src.join(m).join("mod.rs").exists(),
            "src/lib.rs's layering names a module that does not exist: {m}"
        );
    }
    let bottom = ["smtp", "sys", "clock"];
    let mut broken = Vec::new();
    for (module, code) in sources() {
        let Some(top) = module.first() else { continue };
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            // `crate::{a, b::c}` names several; `crate::a::b` one.
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(|n| n.trim().split("::").next().unwrap_or(""))
                    .collect(),
                None => vec![rest
                    .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or("")],
            };
            for used in names.into_iter().filter(|n| !n.is_empty() && *n != top) {
                let rule = rules.iter().find(|(m, _)| m == top).map(|(_, r)| r);
                let allowed = match rule {
                    _ if used == "app" => false,
                    Some(Rule::Only(list)) if list.is_empty() => false,
                    Some(Rule::Only(list)) => {
                        bottom.contains(&used) || list.iter().any(|l| l == used)
                    }
                    Some(Rule::Not(list)) => !list.iter().any(|l| l == used),
                    None => true,
                };
                if !allowed {
                    broken.push(format!("{} imports crate::{used}", module.join("/")));
                }
            }
        }
    }
    broken.sort();
    broken.dedup();
    assert!(
        broken.is_empty(),
        "the layering of src/lib.rs does not hold: {broken:#?}"
    );
}
