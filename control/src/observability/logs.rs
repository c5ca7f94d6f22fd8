//! The control plane's log lines on standard error: text (coloured on a terminal) or one JSON
//! object per line (`log-format = "json"`). A request's lines carry its id from the `request`
//! span that `app.rs` opens around it (`span.request_id` in JSON).

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Installs the global subscriber: level `info` unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}
