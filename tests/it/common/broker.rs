//! A RabbitMQ node of a test's own, for tests that stop and start the broker: the node runs
//! under its own name, ports and directory, so the shared broker other work uses is never
//! touched. It is stopped and its directory removed when dropped.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use tempfile::TempDir;

/// Where the Debian package keeps the scripts that run as the calling user (the ones on
/// `PATH` switch to the `rabbitmq` user when called by root, and would not see this node's
/// settings).
const BIN: &str = "/usr/lib/rabbitmq/bin";

pub struct PrivateBroker {
    node: String,
    port: u16,
    /// Erlang distribution's port, its own too.
    dist_port: u16,
    dir: TempDir,
}

impl PrivateBroker {
    /// Starts a node and waits until it takes connections. `None`, said loudly, when RabbitMQ is
    /// not installed; under CI that is a failure.
    pub fn start() -> Option<PrivateBroker> {
        if !Path::new(BIN).join("rabbitmq-server").exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but RabbitMQ is not installed at {BIN}: a test needs a node of its own"
            );
            eprintln!(
                "\n!!! SKIPPED: RabbitMQ is not installed at {BIN}; this test starts a node of its own !!!\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("a directory for the node");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").expect("plugins file");
        let broker = PrivateBroker {
            node: format!(
                "tongban-test-{}-{}@localhost",
                std::process::id(),
                free_port()
            ),
            port: free_port(),
            dist_port: free_port(),
            dir,
        };
        let started = broker
            .command("rabbitmq-server")
            .arg("-detached")
            .status()
            .expect("rabbitmq-server runs");
        assert!(started.success(), "rabbitmq-server -detached: {started}");
        let pid_file = broker.dir.path().join("pid");
        broker.ctl(&["wait", &pid_file.display().to_string(), "--timeout", "120"]);
        Some(broker)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker application: connections drop, the port closes; the node stays.
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts the broker application again and waits until it is up.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.ctl(&["await_startup"]);
    }

    fn command(&self, program: &str) -> Command {
        let d = self.dir.path();
        let mut command = Command::new(Path::new(BIN).join(program));
        command
            // The Erlang cookie is made and read under HOME.
            .env("HOME", d)
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_PID_FILE", d.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"));
        command
    }

    fn ctl(&self, args: &[&str]) {
        let out = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .output()
            .expect("rabbitmqctl runs");
        assert!(
            out.status.success(),
            "rabbitmqctl -n {} {args:?}: {}{}",
            self.node,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self
            .command("rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .arg("stop")
            .output();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
