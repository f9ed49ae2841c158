//! The client connection around HTTP (SECURITY 42, 46): open connections counted and capped
//! in all and per client network before anything is read; each request head bounded in
//! bytes *while* it is read (pingora buffers up to 1 MiB before it looks) and in time; idle
//! kept-alive connections closed; and a connection that can be ended from outside (an
//! upgraded tunnel whose session ended).
//!
//! [`Guarded`] wraps pingora's HTTP application: every accepted stream is wrapped in a
//! [`Conn`] before pingora reads from it. The proxy's `logging` phase tells the connection
//! that a request is over ([`request_done`]), so the next bytes start a new head.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use atomic_waker::AtomicWaker;
use ipnet::IpNet;
use pingora::apps::ServerApp;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    Stream, TimingDigest, UniqueID, UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What bounds a connection, from `server.limits` and the trusted proxies.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Longest request line (414 past it).
    pub max_line: usize,
    /// Longest whole head: request line, header fields, the blank line (431 past it).
    pub max_head: usize,
    pub head_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_network: usize,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Peers that speak for many clients: counted in the total only.
    pub trusted: Vec<IpNet>,
}

impl ConnLimits {
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let l = &cfg.server.limits;
        Self {
            max_line: l.max_request_line,
            // `read_edge` counts each field as name + value + 4 (": " and CRLF); the request
            // line's CRLF and the blank line are the 4 more.
            max_head: l.max_request_line + l.max_header_bytes + 4,
            head_timeout: l.head_timeout,
            idle_timeout: l.idle_timeout,
            max_connections: l.max_connections,
            max_per_network: l.max_connections_per_network,
            ipv4_prefix: cfg.login_limits.ipv4_prefix,
            ipv6_prefix: 64,
            trusted: cfg.trusted_proxies.clone(),
        }
    }
}

/// Open connections, in all and per client network.
#[derive(Debug, Default)]
pub struct Counts {
    total: AtomicUsize,
    /// Bytes kept for unfinished heads, all connections together.
    held: AtomicUsize,
    per_network: Mutex<HashMap<IpNet, usize>>,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Counts>,
    network: Option<IpNet>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(net) = self.network
            && let Ok(mut map) = self.counts.per_network.lock()
            && let Some(n) = map.get_mut(&net)
        {
            *n -= 1;
            if *n == 0 {
                map.remove(&net);
            }
        }
    }
}

impl Counts {
    /// A slot for a new connection from `peer`, or `None` when a cap is reached.
    pub fn take(self: &Arc<Self>, peer: Option<IpAddr>, limits: &ConnLimits) -> Option<Slot> {
        if self.total.fetch_add(1, Ordering::Relaxed) >= limits.max_connections {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        let mut slot = Slot {
            counts: self.clone(),
            network: None,
        };
        let Some(ip) = peer.map(crate::net::canonical) else {
            return Some(slot);
        };
        if limits.trusted.iter().any(|n| n.contains(&ip)) {
            return Some(slot);
        }
        let len = if ip.is_ipv4() {
            limits.ipv4_prefix
        } else {
            limits.ipv6_prefix
        };
        let net = IpNet::new(ip, len).map_or_else(|_| IpNet::from(ip), |n| n.trunc());
        let Ok(mut map) = self.per_network.lock() else {
            return None;
        };
        let n = map.entry(net).or_insert(0);
        if *n >= limits.max_per_network {
            // `slot` (without a network) gives back the total on drop.
            return None;
        }
        *n += 1;
        slot.network = Some(net);
        Some(slot)
    }
}

/// Set once the process is handing over (graceful upgrade) or shutting down gracefully.
static DRAINING: AtomicBool = AtomicBool::new(false);

/// From now on every answer closes its connection (`Connection: close`), so a kept-alive
/// client sends its next request on a new connection, which the listening socket gives to
/// the process that carries on (a graceful upgrade) — never a request on a connection this
/// process is about to close.
pub fn drain() {
    DRAINING.store(true, Ordering::Release);
}

/// Whether this process is draining its connections (see [`drain`]).
pub fn draining() -> bool {
    DRAINING.load(Ordering::Acquire)
}

/// pingora's HTTP application with every client connection guarded.
pub struct Guarded<A> {
    inner: Arc<A>,
    limits: Arc<ConnLimits>,
    counts: Arc<Counts>,
    /// How long a shutdown waits for kept-alive connections to finish their last request
    /// before pingora drops the idle ones.
    drain_for: Duration,
}

impl<A> Guarded<A> {
    pub fn new(inner: A, limits: ConnLimits) -> Self {
        Self {
            inner: Arc::new(inner),
            limits: Arc::new(limits),
            counts: Arc::new(Counts::default()),
            drain_for: Duration::ZERO,
        }
    }

    /// At shutdown, waits up to `grace` for the open connections to close on their own
    /// (each answer meanwhile says `Connection: close`) before idle ones are dropped.
    #[must_use]
    pub fn draining_for(mut self, grace: Duration) -> Self {
        self.drain_for = grace;
        self
    }
}

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\ncontent-length: 33\r\nconnection: close\r\n\r\ntoo many connections; try again\r\n";

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Guarded<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.as_any().is::<Conn>() {
            return self.inner.process_new(stream, shutdown).await;
        }
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let Some(slot) = self.counts.take(peer, &self.limits) else {
            crate::metrics::connection_refused("too_many");
            tracing::debug!(peer = ?peer, "connection refused: too many open connections");
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                stream.write_all(BUSY).await?;
                stream.flush().await
            })
            .await;
            let _ = stream.shutdown().await;
            return None;
        };
        let h2 = matches!(stream.selected_alpn_proto(), Some(ALPN::H2));
        let mut conn = Conn::new(stream, slot, self.limits.clone(), h2);
        // pingora's state for a connection is large (tens of KiB): it is made only once a
        // first head has fully arrived, so slow or oversized heads cost only the guard.
        if !h2 && !conn.first_head().await {
            return None;
        }
        self.inner.process_new(Box::new(conn), shutdown).await
    }

    async fn cleanup(&self) {
        // pingora's cleanup drops every idle kept-alive connection at once: a client that
        // sent its next request at that moment would see its connection reset. Until the
        // grace period is nearly over, such clients are answered instead (with
        // `Connection: close`), and come back on a new connection.
        drain();
        let deadline = Instant::now() + self.drain_for.saturating_sub(Duration::from_millis(500));
        while self.counts.total.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner.cleanup().await;
    }
}

/// What a connection shares with the phases and the tunnel checks.
#[derive(Debug, Default)]
pub struct Shared {
    /// The request being served is over: the next bytes begin a new head.
    done: AtomicBool,
    /// Ended from outside: reads and writes fail from now on.
    killed: AtomicBool,
    /// Watched as a tunnel: reads register their waker and count bytes.
    watched: AtomicBool,
    moved: AtomicU64,
    waker: AtomicWaker,
}

impl Shared {
    /// Ends the connection: a blocked read wakes up and fails, and so does every later
    /// read or write.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// From now on, count what moves (activity) and wake on [`Shared::kill`].
    pub fn watch(&self) {
        self.watched.store(true, Ordering::Release);
    }

    /// Bytes moved through a watched connection so far.
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }
}

/// Where the connection is in its request cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between requests on a kept-alive connection: nothing of the next head yet.
    Idle,
    /// Reading a head: `seen` bytes so far, `line` bytes of the current line (`cr`: its
    /// last byte was CR), `started`: the request line has begun.
    Head {
        seen: usize,
        line: usize,
        cr: bool,
        started: bool,
    },
    /// The head is read: body, response, or an upgraded tunnel; no limits until the
    /// request is over.
    Body,
}

/// The answer that ends a connection whose head broke a limit.
#[derive(Debug)]
struct Refusal {
    bytes: &'static [u8],
    written: usize,
    /// The answer is out and the write side shut: what the client still sends is read and
    /// dropped for a moment, so the close does not reset the answer away.
    shut: bool,
    drained: usize,
}

/// How long, and how much, a refused connection's input is drained before it is closed.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 256 * 1024;

const TOO_LONG_LINE: &[u8] =
    b"HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 22\r\nconnection: close\r\n\r\nrequest line too long\n";
const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 32\r\nconnection: close\r\n\r\nrequest header fields too large\n";
const TOO_SLOW: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n\
content-length: 26\r\nconnection: close\r\n\r\nrequest head took too long\n";

/// A guarded client connection (see the module).
pub struct Conn {
    inner: Stream,
    shared: Arc<Shared>,
    limits: Arc<ConnLimits>,
    phase: Phase,
    timer: Pin<Box<Sleep>>,
    refusal: Option<Refusal>,
    /// An unfinished head's bytes so far (then, once it is complete, handed on from
    /// `delivered`).
    stash: Vec<u8>,
    delivered: usize,
    /// The stash's capacity, counted in [`Counts`].
    held: usize,
    _slot: Slot,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("inner", &self.inner)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

/// What the unfinished heads of all connections may hold together: past it a head that is
/// still growing gets 503 (a flood of slow heads cannot take more; a head that arrives in
/// one read is never kept).
const HEADS_HELD: usize = 16 * 1024 * 1024;

/// The start of a new head.
const NEW_HEAD: Phase = Phase::Head {
    seen: 0,
    line: 0,
    cr: false,
    started: false,
};

impl Conn {
    fn new(inner: Stream, slot: Slot, limits: Arc<ConnLimits>, h2: bool) -> Self {
        // A new connection's first head is due within the head deadline from the accept.
        let timer = Box::pin(tokio::time::sleep(limits.head_timeout));
        Self {
            inner,
            shared: Arc::new(Shared::default()),
            limits,
            // HTTP/2 frames are not HTTP/1 heads: h2 has its own limits in pingora.
            phase: if h2 { Phase::Body } else { NEW_HEAD },
            timer,
            refusal: None,
            stash: Vec::new(),
            delivered: 0,
            held: 0,
            _slot: slot,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Answers `bytes` and ends the connection (the head is not handed on).
    fn refuse(&mut self, bytes: &'static [u8], cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        crate::metrics::connection_refused(match bytes {
            BUSY => "heads_held",
            TOO_SLOW => "head_timeout",
            TOO_LONG_LINE => "request_line",
            _ => "head_size",
        });
        self.release();
        self.refusal = Some(Refusal {
            bytes,
            written: 0,
            shut: false,
            drained: 0,
        });
        self.timer.as_mut().reset(Instant::now() + LINGER);
        self.poll_refusal(cx)
    }

    /// Sends the refusal, then fails the read: pingora closes the connection.
    fn poll_refusal(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(r) = self.refusal.as_mut() else {
            return Poll::Ready(Err(refused()));
        };
        while r.written < r.bytes.len() {
            let rest = r.bytes.get(r.written..).unwrap_or_default();
            match Pin::new(&mut *self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(n)) if n > 0 => r.written += n,
                Poll::Ready(_) => return Poll::Ready(Err(refused())),
                Poll::Pending => return Poll::Pending,
            }
        }
        if !r.shut {
            match Pin::new(&mut *self.inner).poll_flush(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(refused())),
                Poll::Ready(Ok(())) => {}
            }
            match Pin::new(&mut *self.inner).poll_shutdown(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return Poll::Ready(Err(refused())),
                Poll::Ready(Ok(())) => r.shut = true,
            }
        }
        // Closing with unread input would reset the connection, and a reset can take the
        // answer with it before the client reads it.
        let mut scratch = [0u8; 4096];
        while r.drained < LINGER_BYTES {
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut *self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => r.drained += buf.filled().len(),
                Poll::Ready(_) => break,
                Poll::Pending => match self.timer.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => break,
                },
            }
        }
        Poll::Ready(Err(refused()))
    }

    /// Reads `chunk` (just read) as part of a head; `Err` with the refusal to send.
    fn scan(&mut self, chunk: &[u8]) -> Result<(), &'static [u8]> {
        let Phase::Head {
            mut seen,
            mut line,
            mut cr,
            mut started,
        } = self.phase
        else {
            return Ok(());
        };
        let mut rest = chunk;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let last_cr = if i > 0 {
                rest.get(i - 1) == Some(&b'\r')
            } else {
                cr
            };
            let len = line + i;
            let blank = len == 0 || (len == 1 && last_cr);
            if !blank && !started {
                started = true;
                if len > self.limits.max_line + 1 {
                    return Err(TOO_LONG_LINE);
                }
            } else if blank && started {
                // The end of the head: what follows is the body (or the next request).
                self.phase = Phase::Body;
                return Ok(());
            }
            line = 0;
            cr = false;
            rest = rest.get(i + 1..).unwrap_or_default();
        }
        if let Some(&b) = rest.last() {
            cr = b == b'\r';
        }
        line += rest.len();
        seen += chunk.len();
        if !started && line > self.limits.max_line + 1 {
            return Err(TOO_LONG_LINE);
        }
        if seen > self.limits.max_head {
            return Err(TOO_LARGE);
        }
        self.phase = Phase::Head {
            seen,
            line,
            cr,
            started,
        };
        Ok(())
    }

    /// The phase after the proxy said the request is over.
    fn next_request(&mut self) {
        // A plain load first: this runs on every read, the swap only once per request.
        if self.phase == Phase::Body
            && self.shared.done.load(Ordering::Acquire)
            && self.shared.done.swap(false, Ordering::AcqRel)
        {
            self.phase = Phase::Idle;
            let due = Instant::now() + self.limits.idle_timeout;
            self.timer.as_mut().reset(due);
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refusal.is_some() {
            return this.poll_refusal(cx);
        }
        if this.shared.watched.load(Ordering::Acquire) {
            this.shared.waker.register(cx.waker());
            if this.shared.is_killed() {
                return Poll::Ready(Err(ended()));
            }
        }
        this.next_request();
        if !this.stash.is_empty() && this.phase == Phase::Body {
            return this.deliver(buf);
        }
        if this.phase == Phase::Body {
            let before = buf.filled().len();
            let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
            if this.shared.watched.load(Ordering::Relaxed) {
                let n = buf.filled().len().saturating_sub(before);
                this.shared.moved.fetch_add(n as u64, Ordering::Relaxed);
            }
            return polled;
        }
        this.poll_head(cx, buf, false)
    }
}

impl Conn {
    /// A read while a head is due. pingora parses its whole buffer again after every read,
    /// so a head fed a few bytes at a time would cost it quadratic work: the bytes of an
    /// unfinished head are kept here and handed on once the head is complete (a head that
    /// arrives in one read is handed on as it is). Never more than the head may still grow
    /// by is read; refused as soon as a limit is crossed.
    /// `hold`: keep even a complete head (the first head, read before pingora is involved).
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        hold: bool,
    ) -> Poll<io::Result<()>> {
        loop {
            let seen = match self.phase {
                Phase::Head { seen, .. } => seen,
                _ => 0,
            };
            let room = (self.limits.max_head + 1).saturating_sub(seen).max(1);
            let before = buf.filled().len();
            let polled = {
                // Zeroed before the read (no unsafe here).
                let want = room.min(buf.remaining());
                let mut limited = ReadBuf::new(buf.initialize_unfilled_to(want));
                let polled = Pin::new(&mut *self.inner).poll_read(cx, &mut limited);
                let n = limited.filled().len();
                buf.advance(n);
                polled
            };
            match polled {
                Poll::Ready(Ok(())) if buf.filled().len() == before => {
                    // The client closed: an unfinished head is dropped with it.
                    self.release();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    if self.phase == Phase::Idle {
                        self.phase = NEW_HEAD;
                        let due = Instant::now() + self.limits.head_timeout;
                        self.timer.as_mut().reset(due);
                    } else if self.timer.deadline() <= Instant::now() {
                        buf.set_filled(before);
                        return self.refuse(TOO_SLOW, cx);
                    }
                    if let Err(answer) = self.scan(buf.filled().get(before..).unwrap_or_default()) {
                        buf.set_filled(before);
                        return self.refuse(answer, cx);
                    }
                    if self.phase == Phase::Body && self.stash.is_empty() && !hold {
                        return Poll::Ready(Ok(()));
                    }
                    let chunk = buf.filled().get(before..).unwrap_or_default();
                    if !self.keep(chunk) {
                        buf.set_filled(before);
                        return self.refuse(BUSY, cx);
                    }
                    buf.set_filled(before);
                    if self.phase == Phase::Body {
                        return if hold {
                            Poll::Ready(Ok(()))
                        } else {
                            self.deliver(buf)
                        };
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    return match self.timer.as_mut().poll(cx) {
                        Poll::Pending => Poll::Pending,
                        // Nothing of a request: close quietly, as at the end of a keep-alive.
                        Poll::Ready(()) if seen == 0 => Poll::Ready(Ok(())),
                        Poll::Ready(()) => self.refuse(TOO_SLOW, cx),
                    };
                }
            }
        }
    }

    /// Keeps `chunk` of an unfinished head, within what all unfinished heads may hold
    /// together; `false` when that is spent.
    fn keep(&mut self, chunk: &[u8]) -> bool {
        let need = self.stash.len() + chunk.len();
        if need > self.stash.capacity() {
            // Doubling, but never past the limit (a 40 KiB head, not 64).
            let cap = (self.stash.capacity() * 2)
                .min(self.limits.max_head + 1)
                .max(need);
            let more = cap - self.stash.capacity();
            let held = &self._slot.counts.held;
            if held.fetch_add(more, Ordering::Relaxed) + more > HEADS_HELD {
                held.fetch_sub(more, Ordering::Relaxed);
                return false;
            }
            self.stash.reserve_exact(cap - self.stash.len());
            self.held += more;
        }
        self.stash.extend_from_slice(chunk);
        true
    }

    /// Gives back what this connection's kept head held.
    fn release(&mut self) {
        self.stash = Vec::new();
        self._slot
            .counts
            .held
            .fetch_sub(self.held, Ordering::Relaxed);
        self.held = 0;
    }

    /// Reads the connection's first head into the guard, within the limits: `true` once it
    /// is complete (pingora then reads it from here), `false` when the connection ended
    /// (closed, refused, or silent until the deadline).
    async fn first_head(&mut self) -> bool {
        std::future::poll_fn(|cx| {
            let mut scratch = [0u8; 8 * 1024];
            let mut buf = ReadBuf::new(&mut scratch);
            match self.poll_head(cx, &mut buf, true) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Ok(())) => Poll::Ready(self.phase == Phase::Body),
                Poll::Ready(Err(_)) => Poll::Ready(false),
            }
        })
        .await
    }

    /// Hands on the kept bytes of a complete head, as much as fits.
    fn deliver(&mut self, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let rest = self.stash.get(self.delivered..).unwrap_or_default();
        let n = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..n).unwrap_or_default());
        self.delivered += n;
        if self.delivered >= self.stash.len() {
            self.delivered = 0;
            self.release();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shared.is_killed() {
            return Poll::Ready(Err(ended()));
        }
        let polled = Pin::new(&mut *this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled
            && this.shared.watched.load(Ordering::Relaxed)
        {
            this.shared.moved.fetch_add(n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shared.is_killed() {
            return Poll::Ready(Err(ended()));
        }
        Pin::new(&mut *this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Conn {
    async fn shutdown(&mut self) {
        Shutdown::shutdown(&mut *self.inner).await;
    }
}

impl UniqueID for Conn {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Conn {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Conn {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Conn {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: pingora::protocols::raw_connect::ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for Conn {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for Conn {
    async fn try_peek(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// The guarded connection a request came on (`None` for HTTP/2 streams and tests).
pub fn of(session: &pingora::proxy::Session) -> Option<&Arc<Shared>> {
    session
        .stream()
        .and_then(|s| s.as_any().downcast_ref::<Conn>())
        .map(Conn::shared)
}

/// Called when a request is over (the `logging` phase): the next bytes on its connection
/// begin a new head. A request body the answer did not read is read to its end first (as
/// pingora would right after), so none of it is taken for the next head; a body that does
/// not end in time closes the connection instead.
pub async fn request_done(session: &mut pingora::proxy::Session) {
    let Some(shared) = of(session).cloned() else {
        return;
    };
    if !session.downstream_session.is_body_done() {
        let drained = tokio::time::timeout(
            Duration::from_secs(5),
            session.downstream_session.drain_request_body(),
        )
        .await;
        if !matches!(drained, Ok(Ok(()))) {
            session.set_keepalive(None);
            return;
        }
    }
    shared.done.store(true, Ordering::Release);
}

/// What reads and writes on an ended connection fail with.
fn ended() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the connection's session ended",
    )
}

/// What a read fails with once the guard has answered and closed the connection.
fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "request head refused by the connection guard",
    )
}
