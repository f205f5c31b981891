//! A connection's write side, as the streams on it see it.
//!
//! hyper takes body frames from an SSE stream whenever its own write buffer has room (up to
//! 64 KB here), whether or not the socket is taking bytes; a stream that hands over a batch
//! every time it is asked would fill that buffer with positions that are stale by the time the
//! socket drains them. [`FlowIo`] wraps the socket and tells the streams when a write was
//! refused (the kernel's unsent bytes are over `TCP_NOTSENT_LOWAT`, or the client's window is
//! shut), and when the socket takes bytes again. While it is blocked a stream takes nothing from
//! its queue, so newer positions keep replacing older ones there, and what goes out once the
//! socket drains is the newest.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// Whether the connection's socket refused its last write; shared by the socket wrapper and
/// the stream writing on it.
#[derive(Debug, Default)]
pub struct WriteFlow {
    blocked: AtomicBool,
    /// Writes refused so far.
    refusals: AtomicU64,
    drained: Notify,
}

impl WriteFlow {
    /// A flow that has not been blocked.
    pub fn new() -> Arc<Self> {
        Arc::new(WriteFlow::default())
    }

    /// The socket refused a write and has not taken one since.
    pub fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Acquire)
    }

    /// Writes the socket has refused so far (compare two readings to learn whether a write in
    /// between had to wait).
    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Returns once the socket is not blocked.
    pub async fn wait_unblocked(&self) {
        loop {
            let drained = self.drained.notified();
            if !self.is_blocked() {
                return;
            }
            drained.await;
        }
    }

    fn on_write<T>(&self, r: &Poll<io::Result<T>>) {
        match r {
            Poll::Pending => {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                self.blocked.store(true, Ordering::Release);
            }
            Poll::Ready(_) => {
                if self.blocked.swap(false, Ordering::AcqRel) {
                    self.drained.notify_waiters();
                }
            }
        }
    }
}

/// A socket that reports its write back-pressure to a [`WriteFlow`].
#[derive(Debug)]
pub struct FlowIo<T> {
    inner: T,
    flow: Arc<WriteFlow>,
}

impl<T> FlowIo<T> {
    /// Wraps `inner`, reporting to `flow`.
    pub fn new(inner: T, flow: Arc<WriteFlow>) -> Self {
        FlowIo { inner, flow }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FlowIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FlowIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.flow.on_write(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.flow.on_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn a_refused_write_blocks_the_flow_until_the_socket_takes_bytes() {
        // A pipe with a 64-byte buffer nobody reads yet.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let flow = WriteFlow::new();
        let mut io = FlowIo::new(ours, flow.clone());
        io.write_all(&[0u8; 64]).await.unwrap();
        assert!(!flow.is_blocked());
        assert_eq!(flow.refusals(), 0);
        let writer = tokio::spawn(async move {
            io.write_all(&[1u8; 16]).await.unwrap();
            io
        });
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !flow.is_blocked() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let waiter = {
            let flow = flow.clone();
            tokio::spawn(async move { flow.wait_unblocked().await })
        };
        let mut sink = [0u8; 80];
        tokio::io::AsyncReadExt::read_exact(&mut theirs, &mut sink[..64]).await.unwrap();
        let _io = writer.await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter).await.unwrap().unwrap();
        assert!(!flow.is_blocked());
        assert!(flow.refusals() >= 1);
    }
}
