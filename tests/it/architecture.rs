//! The dependency rule between the crate's top-level modules (ARCHITECTURE.md, "Layers"): every
//! `crate::<module>` path in `src/` names a module in a lower layer than the file's own, so no
//! two top-level modules depend on each other, directly or round a cycle.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module's layer, from the numbered list under `## Layers` in ARCHITECTURE.md
/// (`3. \`catalog\` — what it is`).
fn layers(architecture: &str) -> BTreeMap<String, usize> {
    let section = architecture
        .split("\n## Layers\n")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let section = section.split("\n## ").next().unwrap_or_default();
    let mut layers = BTreeMap::new();
    for line in section.lines() {
        let Some((number, rest)) = line.split_once(". ") else {
            continue;
        };
        let Ok(layer) = number.parse::<usize>() else {
            continue;
        };
        let names = rest.split(" — ").next().unwrap_or_default();
        for name in names.split(',') {
            let name = name.trim().trim_matches('`').to_string();
            let earlier = layers.insert(name.clone(), layer);
            assert!(earlier.is_none(), "`{name}` is listed in two layers");
        }
    }
    layers
}

/// `text` with comments (doc comments too) and the contents of string and character literals
/// blanked out, each line where it was.
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // Where a literal or comment that starts here ends (exclusive), if one does.
        let end = if c == '/' && at(i + 1) == '/' {
            Some(
                (i..chars.len())
                    .find(|&j| chars[j] == '\n')
                    .unwrap_or(chars.len()),
            )
        } else if c == '/' && at(i + 1) == '*' {
            let (mut j, mut depth) = (i, 0);
            while j < chars.len() {
                if at(j) == '/' && at(j + 1) == '*' {
                    depth += 1;
                    j += 2;
                } else if at(j) == '*' && at(j + 1) == '/' {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            Some(j)
        } else if c == 'r'
            && (i == 0
                || !is_ident(at(i - 1))
                || (at(i - 1) == 'b' && !is_ident(at(i.wrapping_sub(2)))))
        {
            // A raw string: r"…", r#"…"#, br#"…"#.
            let hashes = (i + 1..chars.len())
                .take_while(|&j| chars[j] == '#')
                .count();
            if at(i + 1 + hashes) == '"' {
                let closing: String = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let from = i + 2 + hashes;
                let rest: String = chars[from..].iter().collect();
                Some(rest.find(&closing).map_or(chars.len(), |k| {
                    from + rest[..k].chars().count() + closing.len()
                }))
            } else {
                None
            }
        } else if c == '"' {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '"' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            Some(j + 1)
        } else if c == '\'' && at(i + 1) == '\\' {
            (i + 3..chars.len())
                .find(|&j| chars[j] == '\'')
                .map(|j| j + 1)
        } else if c == '\'' && at(i + 2) == '\'' {
            Some(i + 3)
        } else {
            // Code, or a lifetime or label ('a), which is code too.
            None
        };
        match end {
            Some(end) => {
                let end = end.min(chars.len());
                // Blanked, newlines kept.
                out.extend(
                    chars[i..end]
                        .iter()
                        .map(|&c| if c == '\n' { c } else { ' ' }),
                );
                i = end;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules that `crate::` paths in `code` name, with their lines:
/// `crate::store::Store`, and each first segment of `crate::{clock, store::{Store, StoreError}}`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let ident_at = |at: usize| -> String {
        code[at..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let after = at + "crate::".len();
        let rest = &code[after..];
        let start = after + (rest.len() - rest.trim_start().len());
        if !code[start..].starts_with('{') {
            found.push((line_of(start), ident_at(start)));
            continue;
        }
        // A group: the first name of each path at its top level.
        let mut depth = 0;
        let mut expect_name = false;
        for (offset, c) in code[start..].char_indices() {
            match c {
                '{' => {
                    depth += 1;
                    expect_name = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => expect_name = true,
                c if expect_name && (c.is_alphanumeric() || c == '_') => {
                    found.push((line_of(start + offset), ident_at(start + offset)));
                    expect_name = false;
                }
                _ => {}
            }
        }
    }
    found
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_crate_path_names_a_module_in_a_lower_layer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layers = layers(&std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap());
    let src = root.join("src");
    let lib = code_only(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let modules: Vec<String> = lib
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or(l.trim().strip_prefix("mod "))
        })
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    let mut problems: Vec<String> = modules
        .iter()
        .filter(|m| !layers.contains_key(*m))
        .map(|m| format!("src/lib.rs: module `{m}` is in no layer of ARCHITECTURE.md"))
        .chain(layers.keys().filter(|m| !modules.contains(m)).map(|m| {
            format!("ARCHITECTURE.md: layer list names `{m}`, which src/lib.rs does not declare")
        }))
        .collect();

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    for file in files {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let inside = relative.strip_prefix("src/").unwrap();
        if inside.starts_with("bin/") || inside == "main.rs" || inside == "lib.rs" {
            continue;
        }
        let own = inside.split('/').next().unwrap().trim_end_matches(".rs");
        let Some(&own_layer) = layers.get(own) else {
            continue; // reported above
        };
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        for (line, used) in crate_paths(&code) {
            if used == own {
                continue;
            }
            match layers.get(&used) {
                Some(&layer) if layer < own_layer => {}
                Some(&layer) => problems.push(format!(
                    "{relative}:{line}: `{own}` (layer {own_layer}) uses `{used}` (layer {layer}), which is not below it"
                )),
                None => problems.push(format!(
                    "{relative}:{line}: `{own}` uses `crate::{used}`, which is in no layer"
                )),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the layers of ARCHITECTURE.md are broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_check_reads_use_groups_and_inline_paths_but_not_comments_or_strings() {
    let text = r####"
//! See [`crate::api`] and `crate::hub`.
use crate::{
    clock,
    store::{self, Store},
};
/* crate::workers, /* nested */ crate::service */
fn f<'a>(x: &'a str) -> char {
    let _ = "crate::api";
    let _ = r#"crate::hub "quoted" "#;
    let _ = crate::ids::mask_id(x);
    let _ = foo_crate::bar;
    '"'
}
pub(crate) fn g() { let _ = '\''; crate::audit::verify; }
"####;
    let found = crate_paths(&code_only(text));
    assert_eq!(
        found,
        [
            (4, "clock".to_string()),
            (5, "store".to_string()),
            (11, "ids".to_string()),
            (15, "audit".to_string()),
        ]
    );
}

/// Only the store speaks to the database: `sqlx` appears in no code outside `src/store/` (the
/// library's other parts learn what went wrong from `StoreError::failure`), and no SQL keyword
/// starts a string literal outside it either.
#[test]
fn only_the_store_names_the_database_library_or_writes_sql() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut found = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap().to_path_buf();
        if relative.starts_with("store") || relative.starts_with("bin") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in code_only(&text).lines().enumerate() {
            if line.contains("sqlx") {
                found.push(format!("src/{}:{}: names sqlx", relative.display(), n + 1));
            }
        }
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_start();
            if line.starts_with("//") {
                continue;
            }
            for keyword in ["\"SELECT ", "\"INSERT INTO ", "\"UPDATE ", "\"DELETE FROM "] {
                if line.contains(keyword) {
                    found.push(format!("src/{}:{}: writes SQL", relative.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "outside the store:\n{}", found.join("\n"));
}
