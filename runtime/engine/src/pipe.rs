//! Capped in-memory stdout/stderr for guests.
//!
//! wasmtime-wasi's `MemoryOutputPipe` refuses a write past its capacity, which
//! the guest sees as an I/O error and which cannot be told apart from other
//! failures afterwards. Nimbus wants two precise behaviours instead:
//! stdout past the cap stops the guest at once (`output_too_large`, no point
//! burning fuel on output nobody will read), and stderr past the cap is
//! silently dropped (logging too much must not break a function). Either way
//! the host holds at most `cap` bytes plus one 4 KiB chunk, however much the
//! guest writes.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// What happens when the guest writes past the cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Trap the guest with [`OutputOverflow`].
    Trap,
    /// Keep the first `cap` bytes, drop the rest.
    Discard,
}

/// The error a stdout overflow traps with; the invoker recognises it.
#[derive(Debug, thiserror::Error)]
#[error("output exceeds the limit of {0} bytes")]
pub(crate) struct OutputOverflow(pub usize);

/// A cloneable capped buffer; clones share the same bytes.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    buffer: Arc<Mutex<Vec<u8>>>,
    overflowed: Arc<AtomicBool>,
    cap: usize,
    mode: Overflow,
}

/// The largest permit handed out by `check_write`, so no caller sizes an
/// allocation after an unbounded number.
const PERMIT: usize = 64 * 1024;

impl CappedPipe {
    pub(crate) fn new(cap: usize, mode: Overflow) -> Self {
        Self {
            buffer: Arc::default(),
            overflowed: Arc::default(),
            cap,
            mode,
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buffer.lock().expect("pipe lock poisoned"))
    }

    /// Append what fits; report whether everything did.
    fn append(&self, bytes: &[u8]) -> bool {
        let mut buffer = self.buffer.lock().expect("pipe lock poisoned");
        let room = self.cap.saturating_sub(buffer.len());
        if bytes.len() <= room {
            buffer.extend_from_slice(bytes);
            return true;
        }
        buffer.extend_from_slice(&bytes[..room]);
        self.overflowed.store(true, Ordering::Relaxed);
        false
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if self.append(&bytes) || self.mode == Overflow::Discard {
            Ok(())
        } else {
            Err(StreamError::Trap(wasmtime::Error::new(OutputOverflow(
                self.cap,
            ))))
        }
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.append(buf) || self.mode == Overflow::Discard {
            Poll::Ready(Ok(buf.len()))
        } else {
            Poll::Ready(Err(io::Error::other(OutputOverflow(self.cap))))
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
