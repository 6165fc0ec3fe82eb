//! What the hub logs in this test process, for tests that check their lines: one global
//! subscriber (the crate at debug), installed by the first test that asks, capturing every
//! test's lines from then on, so each test picks its own. A subscriber set for one thread
//! instead would miss events whose callsite another test reached first.

use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("tongban=debug")
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in the test process");
        captured
    })
}

/// Starts capturing, if no test has yet. Call it before what logs the lines a test looks for.
pub fn capture() {
    captured();
}

/// Every line captured so far, from every test.
pub fn text() -> String {
    String::from_utf8_lossy(&captured().0.lock().unwrap()).into_owned()
}
