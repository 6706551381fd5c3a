//! Debian's headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ended by NUL on descriptors 3 and 4, so no
//! WebSocket client and no port is needed). A page is opened with every console message,
//! exception, log entry and network request recorded, then evaluated and photographed.
//! Chromium is started with the flags this machine needs (no sandbox as root, no background
//! networking on a closed network) and a fresh profile, and killed when dropped.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    child: Child,
    to_browser: std::io::PipeWriter,
    from_browser: Receiver<Value>,
    next_id: u64,
    /// Every event received so far, in order.
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deadline for one protocol command (a page load included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl Browser {
    /// Start Chromium, or `None` when it is not installed (a failure in CI, where
    /// scripts/install-test-deps.sh installs it).
    pub fn launch() -> Option<Browser> {
        if !std::path::Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "chromium is required in CI (scripts/install-test-deps.sh)"
            );
            eprintln!("skipped: {CHROMIUM} is not installed");
            return None;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let (chrome_reads, to_browser) = std::io::pipe().expect("pipe");
        let (from_chrome, chrome_writes) = std::io::pipe().expect("pipe");
        use std::os::fd::AsRawFd;
        let (r, w) = (chrome_reads.as_raw_fd(), chrome_writes.as_raw_fd());
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only fcntl and dup2, which are async-signal-safe; the
        // two descriptors are open in the parent until after spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // Copies above 3 and 4 first: a pipe end may itself be 3 or 4 (in a process
                // with few files open), and dup2 onto itself would keep its close-on-exec flag.
                let (r, w) = (
                    libc::fcntl(r, libc::F_DUPFD, 10),
                    libc::fcntl(w, libc::F_DUPFD, 10),
                );
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn chromium");
        drop(chrome_reads);
        drop(chrome_writes);
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from_chrome);
            let mut buf = Vec::new();
            while reader.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
                buf.clear();
            }
        });
        Some(Browser {
            child,
            to_browser,
            from_browser: rx,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        })
    }

    /// Send a command (to the browser, or to a page's `session`) and wait for its result;
    /// events arriving meanwhile are kept.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("write to chromium");
        let start = Instant::now();
        loop {
            let left = COMMAND_TIMEOUT.saturating_sub(start.elapsed());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v.get("result").cloned().unwrap_or(Value::Null);
            }
            self.events.push(v);
        }
    }

    /// Wait until an event named `method` has arrived (bounded).
    pub fn wait_event(&mut self, method: &str) -> Value {
        let start = Instant::now();
        loop {
            if let Some(e) = self
                .events
                .iter()
                .find(|e| e.get("method").and_then(Value::as_str) == Some(method))
            {
                return e.clone();
            }
            let left = COMMAND_TIMEOUT.saturating_sub(start.elapsed());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {method} event"));
            self.events.push(v);
        }
    }

    /// Open `url` in a new page with console, log and network recording on, `width` CSS pixels
    /// wide as a phone; returns the page's session id once it has loaded.
    pub fn open(&mut self, url: &str, width: u32, mobile: bool) -> String {
        self.open_sized(url, width, 800, mobile)
    }

    /// `open` with a viewport `height` CSS pixels tall.
    pub fn open_sized(&mut self, url: &str, width: u32, height: u32, mobile: bool) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        let s = Some(session.as_str());
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(s, &format!("{domain}.enable"), json!({}));
        }
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
        self.events.clear();
        let nav = self.call(s, "Page.navigate", json!({ "url": url }));
        assert!(nav.get("errorText").is_none(), "navigate: {nav}");
        self.wait_event("Page.loadEventFired");
        session
    }

    /// Evaluate a JavaScript expression in the page (for the test's inspection only) and
    /// return its value.
    pub fn eval(&mut self, session: &str, expression: &str) -> Value {
        let r = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// A PNG of the whole page (beyond the viewport), or of its top `max_height` CSS pixels.
    pub fn screenshot(&mut self, session: &str, max_height: Option<f64>) -> Vec<u8> {
        use base64::Engine;
        let metrics = self.call(Some(session), "Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(400.0),
            size["height"].as_f64().unwrap_or(800.0),
        );
        let h = max_height.map_or(h, |m| h.min(m));
        let shot = self.call(
            Some(session),
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 }
            }),
        );
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64")
    }

    /// Console calls of type error/warning, uncaught exceptions, and log entries of level
    /// error/warning (CSP violations, failed loads) seen so far.
    pub fn problems(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "warning" | "assert")) =>
                    {
                        Some(format!("console: {}", p["args"]))
                    }
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", p["exceptionDetails"]))
                    }
                    "Log.entryAdded"
                        if matches!(p["entry"]["level"].as_str(), Some("error" | "warning")) =>
                    {
                        Some(format!("log: {}", p["entry"]["text"]))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// The URL of every network request the page made.
    pub fn requests(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(str::to_string))
            .collect()
    }

    /// Load `url` in a new page 1000 px wide and `height` px tall and report what it did, the
    /// strict way: every console message and every log entry, whatever its level, counts as a
    /// problem.
    pub fn load(&mut self, url: &str, height: u32) -> PageRun {
        let session = self.open_sized(url, 1000, height, false);
        let dom = self
            .eval(&session, "document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_string();
        let png = {
            use base64::Engine;
            let shot = self.call(
                Some(&session),
                "Page.captureScreenshot",
                json!({"format": "png", "clip": {"x": 0, "y": 0, "width": 1000, "height": height, "scale": 1}}),
            );
            base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap_or_default())
                .expect("png")
        };
        let requests = self.requests().into_iter().filter(|r| r != url).collect();
        let problems = self
            .events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.consoleAPICalled" => Some(format!("console: {p}")),
                    "Runtime.exceptionThrown" => Some(format!("exception: {p}")),
                    "Log.entryAdded" => Some(format!("log: {p}")),
                    _ => None,
                }
            })
            .collect();
        PageRun {
            requests,
            problems,
            dom,
            png,
        }
    }
}

/// What loading a page showed (`Browser::load`).
pub struct PageRun {
    /// URLs the page requested besides its own document.
    pub requests: Vec<String>,
    /// Console messages, exceptions and log entries, as text.
    pub problems: Vec<String>,
    /// `document.documentElement.outerHTML` after the load.
    pub dom: String,
    /// A PNG of the page at 1000 px wide, `height` px tall.
    pub png: Vec<u8>,
}
