//! The configuration directory the province demo runs the hub on: a working copy of the
//! repository's configuration under `data/province/` (git-ignored), made anew at every run.
//!
//! The hub writes into its configuration directory when a reviewer approves an onboarding
//! bundle (the bundle's files go live there). Run on the repository itself, the demo would
//! leave the 人社 files it onboards in the git tree; on the working copy it leaves the tree as
//! it was. Paths in `hub.toml` are relative to the directory it is in, so the store and the
//! hub's keys are under the copy too (`data/province/data/`).

use anyhow::Context;
use std::path::{Path, PathBuf};

/// Where the working copy goes, relative to the repository.
pub const DIR: &str = "data/province";

/// The files of the repository's configuration the hub reads: `hub.toml`, the inventory, the
/// sharing rules, and what `hub.toml` names (the catalog seed, the identity issuer's public
/// keys, the holiday calendars). The demo issuer's private key stays out: the hub needs only
/// its JWK Set.
const FILES: [&str; 5] = [
    "hub.toml",
    "systems.toml",
    "sharing.toml",
    "examples/province/catalog.json",
    "examples/identity/jwks.json",
];
const FOLDERS: [&str; 4] = ["adapters", "mappings", "schemas", "examples/calendar"];

/// `[onboarding]`'s limits for the demo: the simulated systems walk a step every 2 s and are
/// polled every 2 s, so a conforming one is through in about 15 s; the repository's limits
/// (a minute for 受理, ten for 办结) would keep a failing probe waiting that long.
const ONBOARDING_LIMITS: [(&str, &str); 3] = [
    ("accept_within_seconds", "10"),
    ("complete_within_seconds", "60"),
    ("result_within_seconds", "30"),
];

/// Makes the working copy of the configuration in `repo` anew, leaving out the files in
/// `without` (paths relative to the repository); its directory.
///
/// Anew, store and keys included, because each run shows a system that is not connected
/// onboarding from the start: a copy kept from an earlier run would have that system live
/// already, and a run stopped while a request was probed would leave it on its way, which
/// refuses the next submission (409). A fresh store costs a second (the catalog is seeded
/// again); the API keys the demo prints are new at every run anyway.
pub fn refresh(repo: &Path, without: &[String]) -> anyhow::Result<PathBuf> {
    let dir = repo.join(DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("removing the previous working copy {}", dir.display()))?;
    }
    let skip = |relative: &Path| without.iter().any(|w| Path::new(w) == relative);
    for file in FILES {
        copy(repo, &dir, Path::new(file))?;
    }
    for folder in FOLDERS {
        copy_tree(repo, &dir, Path::new(folder), &skip)?;
    }
    let hub_toml = dir.join("hub.toml");
    let mut text = std::fs::read_to_string(&hub_toml)?;
    for (key, value) in ONBOARDING_LIMITS {
        text = set_key(&text, key, value)
            .with_context(|| format!("{}: setting {key}", hub_toml.display()))?;
    }
    std::fs::write(&hub_toml, text)?;
    Ok(dir)
}

/// Copies the file `relative` from `repo` to `dir`.
fn copy(repo: &Path, dir: &Path, relative: &Path) -> anyhow::Result<()> {
    let target = dir.join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(repo.join(relative), &target)
        .with_context(|| format!("copying {}", relative.display()))?;
    Ok(())
}

/// Copies the folder `relative` from `repo` to `dir`, with everything below it but what `skip`
/// names. Folders are made for the files they hold only: a mapping's test folder left empty
/// would name a mapping that is not there.
fn copy_tree(
    repo: &Path,
    dir: &Path,
    relative: &Path,
    skip: &dyn Fn(&Path) -> bool,
) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(repo.join(relative))
        .with_context(|| format!("listing {}", relative.display()))?;
    for entry in entries {
        let entry = entry?;
        let path = relative.join(entry.file_name());
        if skip(&path) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_tree(repo, dir, &path, skip)?;
        } else {
            copy(repo, dir, &path)?;
        }
    }
    Ok(())
}

/// `text` with its one `key = …` line set to `key = value`.
fn set_key(text: &str, key: &str, value: &str) -> anyhow::Result<String> {
    let mut found = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let is_key = line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            if is_key {
                found += 1;
                format!("{key} = {value}")
            } else {
                line.to_string()
            }
        })
        .collect();
    anyhow::ensure!(found == 1, "{found} `{key} =` lines, not one");
    Ok(lines.join("\n") + "\n")
}
