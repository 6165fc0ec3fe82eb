//! Reading a configuration directory into memory: the only part of configuration that does I/O.

use crate::source::{ConfigError, SourceFile};
use std::path::{Path, PathBuf};

/// Every file of a configuration directory, read but not yet understood, plus the problems met
/// while reading (a missing `hub.toml`, a file that is not UTF-8).
#[derive(Debug, Clone, Default)]
pub struct RawConfig {
    pub dir: PathBuf,
    pub hub: Option<SourceFile>,
    pub adapters: Vec<SourceFile>,
    pub mappings: Vec<SourceFile>,
    pub schemas: Vec<SourceFile>,
    /// The catalog seed file `hub.toml` names, read so that adapters' items can be checked
    /// against it.
    pub seed: Option<SourceFile>,
    /// The identity issuer's JWK Set, when `hub.toml` names a file (`identity.jwks_file`).
    pub jwks: Option<SourceFile>,
    /// The holiday files `[supervision] calendars` names, in the order given.
    pub calendars: Vec<SourceFile>,
    /// `sharing.toml`, when the directory has one.
    pub sharing: Option<SourceFile>,
    /// `systems.toml`, the inventory of self-built systems, when the directory has one.
    pub systems: Option<SourceFile>,
    pub errors: Vec<ConfigError>,
}

impl RawConfig {
    /// Reads `hub.toml`, `sharing.toml` and `systems.toml` (when there are), `adapters/*.toml`, `mappings/*.toml` and `schemas/*.schema.json` under
    /// `dir`, in file-name order. Never fails: what cannot be read becomes an error in the list.
    pub fn read(dir: &Path) -> RawConfig {
        let mut raw = RawConfig {
            dir: dir.to_path_buf(),
            ..RawConfig::default()
        };
        raw.hub = raw.read_file(Path::new("hub.toml"));
        if dir.join("sharing.toml").exists() {
            raw.sharing = raw.read_file(Path::new("sharing.toml"));
        }
        if dir.join("systems.toml").exists() {
            raw.systems = raw.read_file(Path::new("systems.toml"));
        }
        let seed = raw.hub.as_ref().and_then(|hub| {
            let table: toml::Table = toml::from_str(&hub.text).ok()?;
            table
                .get("catalog")?
                .get("seed")?
                .as_str()
                .map(PathBuf::from)
        });
        if let Some(seed) = seed {
            raw.seed = raw.read_file(&seed);
        }
        let jwks = raw.hub.as_ref().and_then(|hub| {
            let table: toml::Table = toml::from_str(&hub.text).ok()?;
            table
                .get("identity")?
                .get("jwks_file")?
                .as_str()
                .map(PathBuf::from)
        });
        if let Some(jwks) = jwks {
            raw.jwks = raw.read_file(&jwks);
        }
        let calendars: Vec<PathBuf> = raw
            .hub
            .as_ref()
            .and_then(|hub| {
                let table: toml::Table = toml::from_str(&hub.text).ok()?;
                let list = table.get("supervision")?.get("calendars")?.as_array()?;
                Some(
                    list.iter()
                        .filter_map(|v| v.as_str().map(PathBuf::from))
                        .collect(),
                )
            })
            .unwrap_or_default();
        for calendar in calendars {
            if let Some(file) = raw.read_file(&calendar) {
                raw.calendars.push(file);
            }
        }
        for (folder, suffix) in [
            ("adapters", ".toml"),
            ("mappings", ".toml"),
            ("schemas", ".schema.json"),
        ] {
            let files = raw
                .list(folder, suffix)
                .into_iter()
                .filter_map(|p| raw.read_file(&p))
                .collect();
            match folder {
                "adapters" => raw.adapters = files,
                "mappings" => raw.mappings = files,
                _ => raw.schemas = files,
            }
        }
        raw
    }

    fn list(&mut self, folder: &str, suffix: &str) -> Vec<PathBuf> {
        let entries = match std::fs::read_dir(self.dir.join(folder)) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                self.errors
                    .push(whole_file(folder, format!("cannot list: {e}")));
                return Vec::new();
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| name.ends_with(suffix) && !name.starts_with('.'))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| Path::new(folder).join(n))
            .collect()
    }

    fn read_file(&mut self, relative: &Path) -> Option<SourceFile> {
        match std::fs::read(self.dir.join(relative)) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Some(SourceFile {
                    path: relative.to_path_buf(),
                    text,
                }),
                Err(e) => {
                    let offset = e.utf8_error().valid_up_to();
                    let file = SourceFile {
                        path: relative.to_path_buf(),
                        text: String::from_utf8_lossy(&e.into_bytes()[..offset]).into_owned(),
                    };
                    let (line, column) = file.line_column(offset);
                    self.errors.push(ConfigError {
                        file: relative.to_path_buf(),
                        line: Some(line),
                        column: Some(column),
                        key: None,
                        message: "not valid UTF-8 (configuration files are UTF-8)".into(),
                    });
                    None
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.errors.push(whole_file(
                    relative,
                    format!("missing in {}", self.dir.display()),
                ));
                None
            }
            Err(e) => {
                self.errors
                    .push(whole_file(relative, format!("cannot read: {e}")));
                None
            }
        }
    }
}

fn whole_file(path: impl AsRef<Path>, message: String) -> ConfigError {
    ConfigError {
        file: path.as_ref().to_path_buf(),
        line: None,
        column: None,
        key: None,
        message,
    }
}
