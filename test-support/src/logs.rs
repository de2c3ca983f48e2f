//! Log lines captured for assertions: [`capture`] makes a `tracing_subscriber::fmt`
//! subscriber writing into memory the current thread's default. With a current-thread
//! runtime the code under test logs on the test's thread, so only its lines land here.

use std::sync::{Arc, Mutex};

/// What was logged while the guard from [`capture`] lived.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLogs {
    /// Everything logged so far, as text (no colours).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// The process-wide default while tests capture: interested in everything up to
/// `TRACE`, doing nothing. Without it the global default is "no subscriber", and a
/// callsite another test's thread reaches first can be cached as "never interested"
/// (and the global level filter as OFF) between two scoped subscribers, so a test's
/// own subscriber silently misses lines (seen as a flaky "no logs captured").
struct Interested;

impl tracing::Subscriber for Interested {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Captures this thread's log lines at `level` and above until the guard drops.
pub fn capture(level: tracing::Level) -> (CapturedLogs, tracing::subscriber::DefaultGuard) {
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        // Fails only if the binary already set one, which serves as well.
        let _ = tracing::subscriber::set_global_default(Interested);
    });
    let logs = CapturedLogs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(level)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}
