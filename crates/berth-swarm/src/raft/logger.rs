//! Bridges tikv raft's slog records to `tracing`: raft's routine chatter at debug level,
//! its warnings and errors as such.

use std::fmt::{self, Write as _};

use slog::{Drain, Level, OwnedKVList, Record, KV};

/// A slog drain that formats each record (message and key-values) and emits it as a
/// `tracing` event.
struct TracingDrain;

/// Collects slog key-values as ` key=value` pairs.
struct KvText(String);

impl slog::Serializer for KvText {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

fn enabled(level: Level) -> bool {
    match level {
        Level::Critical | Level::Error => tracing::enabled!(tracing::Level::ERROR),
        Level::Warning => tracing::enabled!(tracing::Level::WARN),
        _ => tracing::enabled!(tracing::Level::DEBUG),
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = record.level();
        if !enabled(level) {
            return Ok(());
        }
        let mut kv = KvText(String::new());
        let _ = record.kv().serialize(record, &mut kv);
        let _ = values.serialize(record, &mut kv);
        let msg = record.msg();
        let kv = kv.0;
        match level {
            Level::Critical | Level::Error => tracing::error!("raft: {msg}{kv}"),
            Level::Warning => tracing::warn!("raft: {msg}{kv}"),
            _ => tracing::debug!("raft: {msg}{kv}"),
        }
        Ok(())
    }
}

/// The slog logger handed to raft.
pub(crate) fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}
