//! The real `tongban` binary: a command clear of the host's settings, and `tongban serve` as a
//! process of its own whose output the test keeps.

use super::wait::PATIENCE;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The binary, with none of the host's `TONGBAN_*` or `RUST_LOG` settings.
pub fn tongban() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tongban"));
    for var in [
        "TONGBAN_CONFIG",
        "TONGBAN_STORE_URL",
        "TONGBAN_LISTEN",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command
}

/// The format the binary logs in (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    fn arg(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `tongban serve`, everything it writes kept; killed if the test ends before it stops (a panic
/// must not leave it serving).
pub struct Process {
    child: Child,
    pub base: String,
    output: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Process {
    /// Starts `tongban serve` on a free port with the configuration in `dir`, logging in
    /// `format` what `filter` (`RUST_LOG`) lets through, and waits until it says where it
    /// serves.
    pub async fn start(dir: &Path, format: LogFormat, filter: &str) -> Process {
        let dir = dir.to_path_buf();
        let filter = filter.to_string();
        tokio::task::spawn_blocking(move || {
            let mut child = tongban()
                .args(["--log-format", format.arg()])
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&dir)
                .env("RUST_LOG", filter)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let output = Arc::new(Mutex::new(Vec::new()));
            let (tx, lines) = std::sync::mpsc::channel::<String>();
            // Both streams read to their end, so the hub never blocks on a full pipe.
            let read = |stream: Box<dyn Read + Send>, tx: std::sync::mpsc::Sender<String>| {
                let output = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        output.lock().unwrap().push(line.clone());
                        let _ = tx.send(line);
                    }
                })
            };
            let readers = vec![
                read(Box::new(child.stdout.take().unwrap()), tx.clone()),
                read(Box::new(child.stderr.take().unwrap()), tx),
            ];
            let mut process = Process {
                child,
                base: String::new(),
                output,
                readers,
            };
            let start = Instant::now();
            process.base = loop {
                let line = lines
                    .recv_timeout(PATIENCE)
                    .unwrap_or_else(|_| panic!("the hub did not start: {:#?}", process.output()));
                if let Some(addr) = serving_addr(&line, format) {
                    break format!("http://{addr}");
                }
                assert!(
                    start.elapsed() < PATIENCE,
                    "the hub did not start: {:#?}",
                    process.output()
                );
            };
            process
        })
        .await
        .unwrap()
    }

    /// Every line it has written so far, stdout and stderr.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// The lines written so far that mention `text`.
    pub fn log_lines_with(&self, text: &str) -> Vec<String> {
        self.output()
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    }

    /// SIGKILL: no shutdown, no grace, nothing flushed.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the hub");
        self.child.wait().unwrap();
        // The pipes are closed: the readers have everything once they end.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }

    /// SIGTERM, which must be a clean stop; then everything it wrote.
    pub fn stop(mut self) -> Vec<String> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "SIGTERM is a clean stop: {exit:?}");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        self.output()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` without ANSI escape sequences (colours, which the text format may use).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where the hub says it serves, if `line` is that line.
fn serving_addr(line: &str, format: LogFormat) -> Option<String> {
    match format {
        LogFormat::Json => {
            let record: Value = serde_json::from_str(line).ok()?;
            (record["fields"]["message"] == "tongban serving")
                .then(|| record["fields"]["addr"].as_str().map(str::to_string))
                .flatten()
        }
        LogFormat::Text => {
            let line = strip_ansi(line);
            if !line.contains("tongban serving") {
                return None;
            }
            let rest = &line[line.find("addr=")? + "addr=".len()..];
            Some(rest.split_whitespace().next()?.to_string())
        }
    }
}
