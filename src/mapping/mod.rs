//! Declarative mappings between canonical JSON and a department system's own XML or JSON, in
//! both directions: compiled once from `mappings/<name>.toml`, evaluated as pure functions that
//! return every field error at once.
//!
//! A mapping names the canonical schema it produces and consumes, the legacy format (XML with
//! namespaces, optional SOAP envelope and encoding; or JSON with an optional payload pointer),
//! value tables, and a list of fields. Each field pairs a canonical JSON pointer with a legacy
//! path and says how to convert between them. The README documents the file format.
//!
//! `file` holds the file format as read, `compiler` checks it into a [`Mapping`] (with every
//! problem located in the file), `eval` runs a mapping either way; `tree`, `xml`, `json` and
//! `convert` are the legacy documents, their formats and the value conversions they use.

pub mod cases;
mod compiler;
mod convert;
mod eval;
mod file;
pub mod json;
pub mod tree;
pub mod xml;

pub use compiler::{Format, Mapping, compile};
pub use convert::{Kind, Pattern, Table, Unknown};
pub use eval::{MAX_INPUT_BYTES, MapError, OpenDocument};
pub use tree::{LegacyPath, Node};
pub use xml::{SoapFault, SoapVersion, XmlFormat};
