//! Headless Chromium (Debian's `chromium`; scripts/install-test-deps.sh installs it) driven over
//! the DevTools protocol on a pipe (`--remote-debugging-pipe`: commands on its fd 3, replies and
//! events on its fd 4, mapped to its stdin and stdout by `sh`), so a test sees what the page
//! itself did: every request it made (Network.requestWillBeSent of the page's target, not the
//! browser's own update checks), every console message, exception and log entry, and its DOM.
//! Started with a fresh profile, stopped by pid when dropped.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub struct Chromium {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    /// Events that arrived while waiting for a reply.
    pub events: Vec<Value>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

/// What loading a page showed.
pub struct PageRun {
    /// URLs the page requested besides its own document.
    pub requests: Vec<String>,
    /// Console messages, exceptions and error log entries, as text.
    pub problems: Vec<String>,
    /// `document.documentElement.outerHTML` after the load.
    pub dom: String,
    /// A PNG of the page at 1000 px wide, `height` px tall.
    pub png: Vec<u8>,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Chromium {
    pub fn start() -> Chromium {
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromium is not installed: run scripts/install-test-deps.sh");
        let profile = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 1>&2"#)
            .arg(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().expect("stdin");
        let replies = child.stdout.take().expect("stdout");
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(replies);
            let mut buf = Vec::new();
            // Messages end with a NUL byte; the loop ends when Chromium closes the pipe.
            while let Ok(n) = reader.read_until(0, &mut buf) {
                if n == 0 {
                    break;
                }
                buf.pop();
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        Chromium {
            child,
            commands,
            messages,
            events: Vec::new(),
            next_id: 1,
            session: None,
            _profile: profile,
        }
    }

    /// Send a command (to the attached page, once there is one) and wait for its result.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).expect("json");
        bytes.push(0);
        self.commands.write_all(&bytes).expect("write to chromium");
        self.commands.flush().expect("flush");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.next(deadline, method);
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    /// The next message from Chromium, waiting at most until `deadline` for `what`.
    fn next(&self, deadline: Instant, what: &str) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        self.messages
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("nothing from chromium while waiting for {what}: {e}"))
    }

    /// Wait for an event of the page named `method`.
    pub fn wait_event(&mut self, method: &str) -> Value {
        if let Some(at) = self.events.iter().position(|e| e["method"] == method) {
            return self.events[at].clone();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let v = self.next(deadline, method);
            self.events.push(v.clone());
            if v["method"] == method {
                return v;
            }
        }
    }

    /// Load `url` in a new page, 1000 px wide and `height` px tall, and report what it did.
    pub fn load(&mut self, url: &str, height: u32) -> PageRun {
        // Targets are the browser's business, not the previous page's.
        self.session = None;
        let target = self.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        self.session = attached["sessionId"].as_str().map(str::to_string);
        for domain in [
            "Page.enable",
            "Network.enable",
            "Runtime.enable",
            "Log.enable",
        ] {
            self.call(domain, json!({}));
        }
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1000, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        self.events.clear();
        self.call("Page.navigate", json!({"url": url}));
        self.wait_event("Page.loadEventFired");
        let document = self.call("DOM.getDocument", json!({"depth": 0}));
        let dom = self.call(
            "DOM.getOuterHTML",
            json!({"nodeId": document["root"]["nodeId"]}),
        )["outerHTML"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "clip": {"x": 0, "y": 0, "width": 1000, "height": height, "scale": 1}}),
        );
        let png = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            shot["data"].as_str().unwrap_or_default(),
        )
        .expect("png");
        let mut requests = Vec::new();
        let mut problems = Vec::new();
        for e in &self.events {
            let p = &e["params"];
            match e["method"].as_str().unwrap_or_default() {
                "Network.requestWillBeSent" => {
                    let requested = p["request"]["url"].as_str().unwrap_or_default();
                    if requested != url {
                        requests.push(requested.to_string());
                    }
                }
                "Runtime.consoleAPICalled" => problems.push(format!("console: {p}")),
                "Runtime.exceptionThrown" => problems.push(format!("exception: {p}")),
                "Log.entryAdded" => problems.push(format!("log: {p}")),
                _ => {}
            }
        }
        PageRun {
            requests,
            problems,
            dom,
            png,
        }
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        // Browser.close lets it stop its renderer and helper processes; KILL if it does not go.
        let close = b"{\"id\":0,\"method\":\"Browser.close\"}\0";
        let _ = self.commands.write_all(close);
        let _ = self.commands.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
