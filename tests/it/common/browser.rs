//! Headless Chromium driven over the DevTools protocol (a WebSocket of JSON commands), for the
//! console's tests: open a page, fill and submit its forms as a user would, read what it shows,
//! fetch with its cookies, take screenshots. One browser (its own profile in a temporary
//! directory) per test, killed when dropped.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it). Without it a test
//! skips loudly, except under CI, where it fails.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a page load or a command may take.
const PATIENCE: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Browser {
    child: Child,
    socket: Socket,
    session: String,
    next_id: u64,
    /// Events received while waiting for answers, oldest first.
    events: VecDeque<Value>,
    _profile: tempfile::TempDir,
}

/// The Chromium binary: `TONGBAN_CHROMIUM`, or the first of the usual names on the `PATH`.
fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("TONGBAN_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .map(move |name| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// A fresh headless browser with one blank page, or `None` (said loudly) when there is no
    /// Chromium here and this is not CI.
    pub async fn launch() -> Option<Browser> {
        let Some(binary) = chromium() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must have Chromium for the console's browser tests (apt-get install chromium)"
            );
            eprintln!(
                "\n*** SKIPPED: no Chromium here (install Debian's `chromium`, or set TONGBAN_CHROMIUM); the console's browser test did not run ***\n"
            );
            return None;
        };
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(&binary)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--window-size=1280,900",
                "--lang=zh-CN",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        // Chromium writes the port it chose, and the browser's WebSocket path, to this file.
        let port_file = profile.path().join("DevToolsActivePort");
        let url = crate::common::wait::eventually("Chromium's DevTools port", || async {
            let text = std::fs::read_to_string(&port_file).map_err(|e| e.to_string())?;
            let mut lines = text.lines();
            match (lines.next(), lines.next()) {
                (Some(port), Some(path)) => Ok(format!("ws://127.0.0.1:{port}{path}")),
                _ => Err("not written yet".to_string()),
            }
        })
        .await;
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("the DevTools WebSocket opens");
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: VecDeque::new(),
            _profile: profile,
        };
        let target = browser
            .browser_command("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let attached = browser
            .browser_command(
                "Target.attachToTarget",
                json!({ "targetId": target["targetId"], "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.command("Page.enable", json!({})).await;
        browser.command("Runtime.enable", json!({})).await;
        Some(browser)
    }

    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = Value::String(session.to_string());
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("the browser takes the command");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("the browser answers {method} in time"));
            let Some(Ok(Message::Text(text))) = next else {
                continue;
            };
            let value: Value = serde_json::from_str(text.as_str()).unwrap();
            if value["id"].as_u64() == Some(id) {
                if let Some(error) = value.get("error") {
                    panic!("{method} failed: {error}");
                }
                return value["result"].clone();
            }
            if value.get("method").is_some() {
                self.events.push_back(value);
            }
        }
    }

    async fn browser_command(&mut self, method: &str, params: Value) -> Value {
        self.send(None, method, params).await
    }

    /// A command to the page.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    /// Waits for the page's next event named `method` (one received already counts).
    async fn event(&mut self, method: &str) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self.events.iter().position(|e| e["method"] == method) {
                return self.events.remove(at).unwrap();
            }
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method} comes in time"));
            if let Some(Ok(Message::Text(text))) = next {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if value.get("method").is_some() {
                    self.events.push_back(value);
                }
            }
        }
    }

    /// Opens `url` and waits until it has loaded.
    pub async fn goto(&mut self, url: &str) {
        self.events.clear();
        let navigated = self.command("Page.navigate", json!({ "url": url })).await;
        assert!(
            navigated.get("errorText").is_none(),
            "{url} opens: {navigated}"
        );
        self.event("Page.loadEventFired").await;
    }

    /// Runs `script` in the page: its value (a promise's, once settled).
    pub async fn eval(&mut self, script: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": script, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("{script} threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `script` evaluates to `expected` in the page (a script's live changes).
    pub async fn wait_for(&mut self, what: &str, script: &str, expected: Value) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let found = self.eval(script).await;
            if found == expected {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited for {what}; last: {found}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets the form field `selector` to `value`, as typing would.
    pub async fn fill(&mut self, selector: &str, value: &str) {
        let script = format!(
            "(() => {{ const f = document.querySelector({}); if (!f) throw new Error('no field ' + {0}); f.value = {}; f.dispatchEvent(new Event('input', {{bubbles: true}})); return true; }})()",
            json!(selector),
            json!(value)
        );
        self.eval(&script).await;
    }

    /// Clicks `selector` (a submit button, a link, a radio button).
    pub async fn click(&mut self, selector: &str) {
        let script = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) throw new Error('nothing at ' + {0}); e.click(); return true; }})()",
            json!(selector)
        );
        self.eval(&script).await;
    }

    /// Clicks `selector` and waits for the page it leads to (a form's answer, a link's page).
    pub async fn click_and_wait(&mut self, selector: &str) {
        self.events.clear();
        self.click(selector).await;
        self.event("Page.loadEventFired").await;
    }

    /// What the page shows, as text.
    pub async fn text(&mut self) -> String {
        self.eval("document.body.innerText")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The page's address now.
    pub async fn location(&mut self) -> String {
        self.eval("location.href")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Fetches `url` from the page, with its cookies: status, the header `header`, body text.
    pub async fn fetch(&mut self, url: &str, header: &str) -> (u16, Option<String>, String) {
        let script = format!(
            "fetch({}, {{credentials: 'same-origin'}}).then(async r => [r.status, r.headers.get({}), await r.text()])",
            json!(url),
            json!(header)
        );
        let answer = self.eval(&script).await;
        (
            answer[0].as_u64().unwrap_or_default() as u16,
            answer[1].as_str().map(str::to_string),
            answer[2].as_str().unwrap_or_default().to_string(),
        )
    }

    /// Saves a PNG of the whole page at `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let shot = self
            .command(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// The browser's cookies for `url`.
    pub async fn cookies(&mut self, url: &str) -> Vec<Value> {
        let found = self
            .command("Network.getCookies", json!({ "urls": [url] }))
            .await;
        found["cookies"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
