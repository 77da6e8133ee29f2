//! Guest stdout and stderr, forwarded line by line to the host log.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept from a guest; the rest of a longer line is cut, so a guest printing
/// without newlines cannot grow host memory.
const MAX_LINE: usize = 8 * 1024;

/// The last lines a guest wrote to a stream. A trap's reason quotes them, because a Rust
/// guest prints its panic message to stderr before it traps.
pub type RecentLines = Arc<Mutex<VecDeque<String>>>;

/// Lines kept in a `RecentLines`.
pub const RECENT_LINES: usize = 8;

#[derive(Clone)]
pub struct GuestOutput {
    stage: Arc<str>,
    stream: &'static str,
    recent: Option<RecentLines>,
}

impl GuestOutput {
    pub fn new(stage: Arc<str>, stream: &'static str) -> Self {
        GuestOutput { stage, stream, recent: None }
    }

    /// Also keeps the last `RECENT_LINES` lines in `recent`.
    pub fn keeping_recent(stage: Arc<str>, stream: &'static str, recent: RecentLines) -> Self {
        GuestOutput { stage, stream, recent: Some(recent) }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { output: self.clone(), line: Vec::new() })
    }
}

struct LineWriter {
    output: GuestOutput,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches('\r');
        tracing::info!(stage = %self.output.stage, stream = self.output.stream, "{text}");
        if let Some(recent) = &self.output.recent {
            let mut recent = recent.lock().expect("guest output lock poisoned");
            if recent.len() == RECENT_LINES {
                recent.pop_front();
            }
            recent.push_back(text.to_owned());
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        for &byte in buf {
            if byte == b'\n' {
                self.emit();
            } else if self.line.len() < MAX_LINE {
                self.line.push(byte);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.line.is_empty() {
            self.emit();
        }
        Poll::Ready(Ok(()))
    }
}
