//! Prints a user token from the demo identity issuer for the applicant of an application file,
//! for trying `POST /api/v1/applications` by hand (see README):
//! `cargo run -q --example demo_token -- examples/messages/application.json [LEVEL]`.

#[path = "identity/demo_issuer.rs"]
mod demo_issuer;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: demo_token APPLICATION.json [REAL_NAME_LEVEL (1-3, default 3)]");
        return ExitCode::FAILURE;
    };
    let level = args.next().and_then(|l| l.parse().ok()).unwrap_or(3u8);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let application = match std::fs::read_to_string(&file)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            eprintln!("cannot read {file}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match demo_issuer::user_token(&repo, &application, level) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
