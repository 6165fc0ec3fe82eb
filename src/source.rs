//! Files read from a configuration directory, positions in them, and errors located there:
//! what configuration, mappings and holiday files report their problems with.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// One problem in the configuration, located as precisely as the file format allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, relative to the configuration directory.
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key (TOML dotted path or JSON pointer) the problem is about, when known.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(key) = &self.key {
            write!(f, ": `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All the problems found in one configuration directory.
#[derive(Debug, thiserror::Error)]
#[error("{} configuration error(s):\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One file of the configuration, as text, with its path relative to the directory.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

impl SourceFile {
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(&self.text, offset)
    }

    /// An error located at a span of this file.
    pub fn error_at_span(
        &self,
        key: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = self.line_column(span.start);
        ConfigError {
            file: self.path.clone(),
            line: Some(line),
            column: Some(column),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// An error about a key whose value carries no span: the line is the one that assigns the
    /// key's last segment inside the key's table (`bus.url` is looked for after `[bus]` and
    /// before the next table header).
    pub fn error_at_key(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let (table, last) = key.rsplit_once('.').unwrap_or(("", key));
        let mut in_table = table.is_empty();
        let line = self.text.lines().position(|l| {
            let l = l.trim_start();
            if let Some(header) = l.strip_prefix('[') {
                let name = header.split(']').next().unwrap_or("").trim();
                in_table = name == table;
                return false;
            }
            in_table
                && l.strip_prefix(last)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
        // A key that names a whole table (`identity`) is at its `[identity]` header.
        let line = line.or_else(|| {
            self.text.lines().position(|l| {
                l.trim_start()
                    .strip_prefix('[')
                    .and_then(|h| h.split(']').next())
                    .is_some_and(|name| name.trim() == key)
            })
        });
        ConfigError {
            file: self.path.clone(),
            line: line.map(|l| l + 1),
            column: line.map(|_| 1),
            key: Some(key.to_string()),
            message: message.into(),
        }
    }

    /// A TOML syntax or shape error (unknown key, wrong type, missing key) with its position.
    pub fn toml_error(&self, e: &toml::de::Error) -> ConfigError {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = self.line_column(span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            file: self.path.clone(),
            line,
            column,
            key: None,
            message: e.message().trim().to_string(),
        }
    }
}
