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
    // Every `docs/...` and `contrib/...` path named in the operator documentation exists.
    let mut files = vec!["certs/README.md".to_string()];
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
        for prefix in ["docs/", "contrib/"] {
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
