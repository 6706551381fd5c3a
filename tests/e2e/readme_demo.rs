//! The README's "Try it" commands, taken from README.md itself and run verbatim in a shell
//! against the relay started as `scripts/run-example.sh` starts it (`serve -c
//! config/example.yaml`, from a directory laid out like the repository): swaks over STARTTLS,
//! `python3 scripts/send-example.py`, then `verify outbox/*.eml` on the two signed messages.
//! When the README drifts from what works, this breaks.
//!
//! The example config binds fixed loopback ports (2525, 2587, 2465, 9187); the demo runs in a
//! network namespace of its own (`unshare -n`, root) so that nothing else on the machine can
//! hold them. Where namespaces are not permitted it runs on the machine's loopback.

use crate::relay;

use std::path::Path;
use std::process::{Command, Stdio};

/// The shell commands of the ```sh blocks of README.md's "### Try it" section, continuation
/// lines joined, comments dropped.
fn try_it_commands(readme: &str) -> Vec<String> {
    let start = readme
        .find("### Try it")
        .expect("README has a '### Try it' section");
    let section = &readme[start..];
    let end = section[4..].find("\n## ").map_or(section.len(), |e| e + 4);
    let section = &section[..end];
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut current = String::new();
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_block = line.trim() == "```sh";
            continue;
        }
        if !in_block || line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (part, continued) = match line.trim_end().strip_suffix('\\') {
            Some(p) => (p, true),
            None => (line.trim_end(), false),
        };
        current.push_str(part.trim());
        current.push(' ');
        if !continued {
            commands.push(current.trim().to_string());
            current.clear();
        }
    }
    commands
}

fn unshare_works() -> bool {
    Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn readme_try_it_commands_run_verbatim() {
    let readme = std::fs::read_to_string(Path::new(relay::ROOT).join("README.md")).unwrap();
    let commands = try_it_commands(&readme);
    assert!(
        commands.len() >= 3
            && commands[0].starts_with("swaks ")
            && commands.iter().any(|c| c.contains("send-example.py"))
            && commands.iter().any(|c| c.contains(" verify outbox/*.eml")),
        "the README's demo changed shape: {commands:#?}"
    );
    // run-example.sh ends by serving config/example.yaml: so does this test.
    let run_example =
        std::fs::read_to_string(Path::new(relay::ROOT).join("scripts/run-example.sh")).unwrap();
    assert!(
        run_example.contains("-- serve -c config/example.yaml"),
        "{run_example}"
    );
    for tool in ["swaks", "python3"] {
        if Command::new(tool).arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "{tool} is required in CI (scripts/install-test-deps.sh)"
            );
            eprintln!("skipped: {tool} is not installed");
            return;
        }
    }

    // A directory laid out like the repository, with the binary where cargo puts it.
    let dir = tempfile::tempdir().unwrap();
    for d in ["config", "certs", "scripts"] {
        std::os::unix::fs::symlink(Path::new(relay::ROOT).join(d), dir.path().join(d)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("target/debug")).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_dkim-relay"),
        dir.path().join("target/debug/dkim-relay"),
    )
    .unwrap();

    let mut script = String::from(
        r#"set -u
ip link set lo up 2>/dev/null
./target/debug/dkim-relay serve -c config/example.yaml 2>relay.log &
relay=$!
trap 'kill $relay 2>/dev/null; wait $relay 2>/dev/null' EXIT
# Ready: /readyz answers 200 (bounded).
for _ in $(seq 1 300); do
  if exec 3<>/dev/tcp/127.0.0.1/9187 2>/dev/null; then
    printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3
    if head -1 <&3 | grep -q ' 200 '; then exec 3<&-; break; fi
    exec 3<&-
  fi
  sleep 0.1
done
"#,
    );
    for (i, c) in commands.iter().enumerate() {
        if c.contains(" verify outbox/*.eml") {
            // Directory delivery follows the 250 at once; wait (bounded) for both files.
            script.push_str(
                "for _ in $(seq 1 200); do [ \"$(ls outbox/*.eml 2>/dev/null | wc -l)\" -ge 2 ] && break; sleep 0.1; done\n",
            );
        }
        script.push_str(&format!(
            "echo '=== command {i}'\n{c}\necho \"=== exit $?\"\n"
        ));
    }
    let mut cmd = if unshare_works() {
        let mut c = Command::new("unshare");
        c.args(["-n", "bash", "-c", &script]);
        c
    } else {
        let mut c = Command::new("bash");
        c.args(["-c", &script]);
        c
    };
    let out = cmd
        .current_dir(dir.path())
        .env_remove("DKIM_RELAY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = std::fs::read_to_string(dir.path().join("relay.log")).unwrap_or_default();
    let report = format!(
        "{stdout}\nstderr:\n{}\nrelay log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every command exited 0.
    let exits: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("=== exit "))
        .collect();
    assert_eq!(exits.len(), commands.len(), "{report}");
    assert!(exits.iter().all(|l| *l == "=== exit 0"), "{report}");
    assert!(stdout.contains("250 2.0.0 OK queued as"), "{report}");
    assert!(
        stdout.contains("sent; refused recipients: none"),
        "{report}"
    );
    // Two messages, each named on its result line, each passing.
    let files: Vec<String> = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .flatten()
        .map(|e| format!("outbox/{}", e.file_name().to_string_lossy()))
        .collect();
    assert_eq!(files.len(), 2, "{report}");
    for f in &files {
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{f}: pass"))),
            "{f}\n{report}"
        );
    }
}

#[test]
fn try_it_commands_are_read_from_the_readme() {
    let md = "## Quick\n### Try it\n\n```sh\nswaks --server x \\\n      --to y   # z\n# a comment\npython3 s.py\n```\n\ntext\n\n```sh\n./v verify outbox/*.eml \\\n    --key k\n```\n## Next\n```sh\nnot this\n```\n";
    assert_eq!(
        try_it_commands(md),
        vec![
            "swaks --server x --to y   # z",
            "python3 s.py",
            "./v verify outbox/*.eml --key k"
        ]
    );
}
