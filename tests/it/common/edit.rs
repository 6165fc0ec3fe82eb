//! Changes to a copy of the repository's configuration, as a test needs it: a file rewritten,
//! a key's line set, the HTTP systems pointed at mocks.

use super::Issuer;
use std::path::{Path, PathBuf};

/// 沈阳市食品经营许可审批系统, which the hub reaches over SOAP.
pub const SCJG: &str = "sy-scjg-food";
/// 辽宁省社会保障卡服务系统, which the hub reaches over REST.
pub const RST: &str = "ln-rst-card";

/// Rewrites the file at `path` with `change`.
pub fn edit(path: &Path, change: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, change(&text)).unwrap();
}

/// `text` with every `key = …` line replaced by `key = value`; there must be one.
pub fn set_key(text: &str, key: &str, value: &str) -> String {
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let is_key = line
                .trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key {
                found = true;
                format!("{key} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    assert!(found, "no `{key} =` line in\n{text}");
    lines.join("\n") + "\n"
}

/// The adapter file of `system` in the configuration directory `dir`.
pub fn adapter_file(dir: &Path, system: &str) -> PathBuf {
    dir.join("adapters").join(format!("{system}.toml"))
}

/// Changes `key = …` in an adapter's file.
pub fn set_adapter_key(dir: &Path, system: &str, key: &str, value: &str) {
    edit(&adapter_file(dir, system), |t| set_key(t, key, value));
}

/// The repository configuration in a temporary directory, for a hub in front of mock HTTP
/// systems: [`SCJG`] at `soap` and [`RST`] at `rest`, each with `settings` (`key`, `value`) in
/// its adapter file; the AMQP system removed (no broker needed); a one-second shutdown grace,
/// so that stopping the hub is quick; `issuer` as the identity system.
pub fn http_systems_config(
    issuer: &Issuer,
    soap: &str,
    rest: &str,
    settings: &[(&str, &str)],
) -> tempfile::TempDir {
    let dir = super::config_copy();
    issuer.install_in_dir(dir.path());
    std::fs::remove_file(dir.path().join("adapters/dl-ga-hukou.toml")).unwrap();
    edit(&dir.path().join("hub.toml"), |t| {
        set_key(t, "shutdown_grace_seconds", "1")
    });
    for system in [SCJG, RST] {
        edit(&adapter_file(dir.path(), system), |t| {
            let mut t = t
                .replace("http://127.0.0.1:9101", soap)
                .replace("http://127.0.0.1:9201", rest);
            for (key, value) in settings {
                t = set_key(&t, key, value);
            }
            t
        });
    }
    dir
}
