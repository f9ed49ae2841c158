//! The access log: one line per request, in the same text or JSON shape as the rest of the
//! log, formatted on the worker into a reused buffer and written in batches by one writer
//! thread. A worker never waits for the disk; when the queue is full a line is dropped and
//! counted (metric `nidan_access_log_dropped_total`, and a warning line in the log).
//!
//! Why not the `tracing` formatter: it costs several microseconds per request and writes
//! each line with its own `write(2)` on the worker; a writer woken per line (a channel per
//! event) costs a thread wake-up per request instead. Here the writer wakes at most once per
//! [`INTERVAL`] while requests come in, and not at all when idle.

use std::cell::RefCell;
use std::io::Write;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long the writer gathers lines before it writes them (at most this late in the log).
pub const INTERVAL: Duration = Duration::from_millis(100);
/// A batch this large is written at once, without waiting for [`INTERVAL`].
const FLUSH_AT: usize = 64 * 1024;
/// Bytes waiting to be written before lines are dropped (about 25k lines).
const MAX_PENDING: usize = 4 * 1024 * 1024;

/// The shape of a line: the `tracing` text format or its JSON format (`NIDAN_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// One request, as logged.
pub struct Entry<'a> {
    /// The request id (visible ASCII, checked when it was taken).
    pub id: &'a str,
    pub method: &'a str,
    /// The canonical path, without the query.
    pub path: &'a str,
    pub status: u16,
    pub route: &'a str,
    pub user: &'a str,
    pub client: Option<IpAddr>,
    pub micros: u64,
    /// pingora's error type, when the request ended in one.
    pub error: Option<&'a str>,
}

static LOG: OnceLock<Log> = OnceLock::new();

struct Log {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    format: Format,
    pending: Mutex<Pending>,
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum WriterState {
    /// Waiting for the first line of a batch: the next line wakes it.
    Idle,
    /// Gathering a batch for up to [`INTERVAL`]: only a full batch wakes it early.
    Gathering,
    /// Writing; it looks at the queue again when done.
    Busy,
}

struct Pending {
    buf: Vec<u8>,
    lines: u64,
    writer: WriterState,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic while holding the lock leaves plain bytes: still usable.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the writer thread (once; later calls change nothing). Lines recorded before it
/// started, or when it never starts (the log level excludes `access`), are not written.
pub fn start(format: Format) -> std::io::Result<()> {
    if LOG.get().is_some() {
        return Ok(());
    }
    let shared = Arc::new(Shared {
        format,
        pending: Mutex::new(Pending {
            buf: Vec::with_capacity(FLUSH_AT * 2),
            lines: 0,
            writer: WriterState::Busy,
            closed: false,
        }),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
    });
    // Registered now, so the metric reads 0 rather than missing.
    crate::metrics::access_log_dropped(0);
    let for_writer = shared.clone();
    let handle = std::thread::Builder::new()
        .name("nidan-access".into())
        .spawn(move || write_loop(&for_writer, &mut std::io::stderr()))?;
    let _ = LOG.set(Log {
        shared,
        writer: Mutex::new(Some(handle)),
    });
    Ok(())
}

/// Writes what is queued and stops the writer (at shutdown, after the last request).
pub fn flush() {
    let Some(log) = LOG.get() else {
        return;
    };
    {
        let mut p = log.shared.lock();
        p.closed = true;
    }
    log.shared.wake.notify_all();
    let handle = log
        .writer
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(h) = handle {
        let _ = h.join();
    }
}

thread_local! {
    /// The line being formatted, reused by every request on this thread.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(256));
    /// `YYYY-MM-DDTHH:MM:SS.` for the second last formatted on this thread.
    static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
}

/// Queues the line for one request. Never blocks on the disk: when the queue is full the
/// line is dropped and counted.
pub fn record(entry: &Entry<'_>) {
    let Some(log) = LOG.get() else {
        return;
    };
    let shared = &log.shared;
    LINE.with_borrow_mut(|line| {
        line.clear();
        format_line(line, shared.format, SystemTime::now(), entry);
        push(shared, line);
    });
}

fn push(shared: &Shared, line: &[u8]) {
    let mut p = shared.lock();
    if p.closed || p.buf.len() + line.len() > MAX_PENDING {
        drop(p);
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        crate::metrics::access_log_dropped(1);
        return;
    }
    p.buf.extend_from_slice(line);
    p.lines += 1;
    let wake = match p.writer {
        WriterState::Idle => true,
        WriterState::Gathering => p.buf.len() >= FLUSH_AT,
        WriterState::Busy => false,
    };
    if wake {
        p.writer = WriterState::Busy;
        drop(p);
        shared.wake.notify_one();
    }
}

fn write_loop(shared: &Shared, out: &mut impl Write) {
    let mut batch = Vec::with_capacity(FLUSH_AT * 2);
    let mut reported = 0;
    loop {
        let (lines, closed) = {
            let mut p = shared.lock();
            while p.buf.is_empty() && !p.closed {
                p.writer = WriterState::Idle;
                p = shared.wake.wait(p).unwrap_or_else(PoisonError::into_inner);
            }
            if !p.closed && p.buf.len() < FLUSH_AT {
                p.writer = WriterState::Gathering;
                p = shared
                    .wake
                    .wait_timeout(p, INTERVAL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            p.writer = WriterState::Busy;
            std::mem::swap(&mut p.buf, &mut batch);
            (std::mem::take(&mut p.lines), p.closed)
        };
        let dropped = shared.dropped.load(Ordering::Relaxed);
        if dropped > reported {
            format_dropped(&mut batch, shared.format, dropped - reported);
            reported = dropped;
        }
        if !batch.is_empty() && (out.write_all(&batch).is_err() || out.flush().is_err()) {
            // Not written: count the lines as dropped (reported once the log works again).
            shared.dropped.fetch_add(lines, Ordering::Relaxed);
            crate::metrics::access_log_dropped(lines);
        }
        batch.clear();
        // A burst may have grown the spare buffer; do not keep megabytes for ever.
        batch.shrink_to(FLUSH_AT * 2);
        if closed {
            let rest = std::mem::take(&mut shared.lock().buf);
            let _ = out.write_all(&rest);
            let _ = out.flush();
            return;
        }
    }
}

/// Appends the line for `entry` at `now` to `out` (what [`record`] queues; public for the
/// benchmarks).
pub fn line(out: &mut Vec<u8>, format: Format, now: SystemTime, entry: &Entry<'_>) {
    format_line(out, format, now, entry);
}

/// One line in the shape `tracing`'s formatter gives it (text or JSON), so log readers
/// see no difference.
fn format_line(out: &mut Vec<u8>, format: Format, now: SystemTime, e: &Entry<'_>) {
    timestamp(out, format, now);
    match format {
        Format::Text => {
            out.extend_from_slice(b"  INFO access: request_id=");
            out.extend_from_slice(e.id.as_bytes());
            out.extend_from_slice(b" method=");
            out.extend_from_slice(e.method.as_bytes());
            out.extend_from_slice(b" path=");
            debug_str(out, e.path);
            out.extend_from_slice(b" status=");
            push_u64(out, e.status.into());
            out.extend_from_slice(b" route=");
            debug_str(out, e.route);
            out.extend_from_slice(b" user=");
            debug_str(out, e.user);
            out.extend_from_slice(b" client=");
            client(out, e.client);
            out.extend_from_slice(b" micros=");
            push_u64(out, e.micros);
            if let Some(err) = e.error {
                out.extend_from_slice(b" error=");
                debug_str(out, err);
            }
            out.push(b'\n');
        }
        Format::Json => {
            out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"request_id\":");
            json_str(out, e.id);
            out.extend_from_slice(b",\"method\":");
            json_str(out, e.method);
            out.extend_from_slice(b",\"path\":");
            json_str(out, e.path);
            out.extend_from_slice(b",\"status\":");
            push_u64(out, e.status.into());
            out.extend_from_slice(b",\"route\":");
            json_str(out, e.route);
            out.extend_from_slice(b",\"user\":");
            json_str(out, e.user);
            out.extend_from_slice(b",\"client\":\"");
            client(out, e.client);
            out.extend_from_slice(b"\",\"micros\":");
            push_u64(out, e.micros);
            if let Some(err) = e.error {
                out.extend_from_slice(b",\"error\":");
                json_str(out, err);
            }
            out.extend_from_slice(b"},\"target\":\"access\"}\n");
        }
    }
}

/// The warning the writer adds when lines were dropped.
fn format_dropped(out: &mut Vec<u8>, format: Format, n: u64) {
    const MESSAGE: &str = "access log lines dropped: the log was not written fast enough";
    timestamp(out, format, SystemTime::now());
    match format {
        Format::Text => {
            let _ = writeln!(out, "  WARN access: {MESSAGE} dropped={n}");
        }
        Format::Json => {
            let _ = writeln!(
                out,
                "\",\"level\":\"WARN\",\"fields\":{{\"message\":\"{MESSAGE}\",\"dropped\":{n}}},\"target\":\"access\"}}"
            );
        }
    }
}

fn client(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        Some(ip) => super::upstream::push_ip(out, ip),
        None => out.push(b'-'),
    }
}

/// Decimal digits of `n` (the formatting machinery costs more than the line's other work).
fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `2026-12-07T05:37:57.605042Z` (UTC, microseconds), as `tracing` writes it; JSON opens
/// the object and the timestamp string (the caller closes it).
fn timestamp(out: &mut Vec<u8>, format: Format, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    if format == Format::Json {
        out.extend_from_slice(b"{\"timestamp\":\"");
    }
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            *text = civil(secs);
            *cached = secs;
        }
        out.extend_from_slice(text);
    });
    // Six digits, zero-padded.
    let mut micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for seconds since the Unix epoch (UTC; proleptic Gregorian).
fn civil(secs: u64) -> [u8; 20] {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 20];
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    let _ = write!(
        cursor,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        year.clamp(0, 9999),
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

/// Plain printable ASCII needs no escaping in either format.
fn plain(s: &str) -> bool {
    s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
}

/// A string as `{:?}` writes it (how `tracing` writes string fields in text).
fn debug_str(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    if plain(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"?\"");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            id: "0af7651916cd43dd8448eb211c80319c",
            method: "GET",
            path: "/public/x%22y",
            status: 502,
            route: "public",
            user: "-",
            client: Some(IpAddr::from([127, 0, 0, 1])),
            micros: 1043,
            error: Some("ConnectRefused"),
        }
    }

    fn at() -> SystemTime {
        // 2026-12-07T05:37:57.605042Z
        UNIX_EPOCH + Duration::new(1_796_621_877, 605_042_000)
    }

    #[test]
    fn text_lines_read_as_tracing_wrote_them() {
        let mut out = Vec::new();
        format_line(&mut out, Format::Text, at(), &entry());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-07T05:37:57.605042Z  INFO access: request_id=0af7651916cd43dd8448eb211c80319c method=GET path=\"/public/x%22y\" status=502 route=\"public\" user=\"-\" client=127.0.0.1 micros=1043 error=\"ConnectRefused\"\n"
        );
        let mut out = Vec::new();
        let e = Entry {
            user: "ta\"ro\n",
            client: None,
            error: None,
            ..entry()
        };
        format_line(&mut out, Format::Text, at(), &e);
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.ends_with(" user=\"ta\\\"ro\\n\" client=- micros=1043\n"),
            "{line}"
        );
    }

    #[test]
    fn json_lines_read_as_tracing_wrote_them() {
        let mut out = Vec::new();
        format_line(&mut out, Format::Json, at(), &entry());
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"timestamp\":\"2026-12-07T05:37:57.605042Z\",\"level\":\"INFO\",\"fields\":{\"request_id\":\"0af7651916cd43dd8448eb211c80319c\",\"method\":\"GET\",\"path\":\"/public/x%22y\",\"status\":502,\"route\":\"public\",\"user\":\"-\",\"client\":\"127.0.0.1\",\"micros\":1043,\"error\":\"ConnectRefused\"},\"target\":\"access\"}\n"
        );
        let mut out = Vec::new();
        let e = Entry {
            path: "/ü\"\\",
            ..entry()
        };
        format_line(&mut out, Format::Json, at(), &e);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["fields"]["path"], "/ü\"\\");
        let mut out = Vec::new();
        format_dropped(&mut out, Format::Json, 3);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["fields"]["dropped"], 3);
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 200, 65_535, 1_000_000, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
        let mut out = Vec::new();
        timestamp(&mut out, Format::Text, UNIX_EPOCH + Duration::new(0, 5_000));
        assert_eq!(out, b"1970-01-01T00:00:00.000005Z");
    }

    #[test]
    fn dates_across_eras() {
        assert_eq!(&civil(0), b"1970-01-01T00:00:00.");
        assert_eq!(&civil(951_782_400), b"2000-02-29T00:00:00.");
        assert_eq!(&civil(4_102_444_799), b"2099-12-31T23:59:59.");
    }

    /// A writer that refuses everything: lines are counted as dropped, never lost silently.
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn shared() -> Arc<Shared> {
        Arc::new(Shared {
            format: Format::Text,
            pending: Mutex::new(Pending {
                buf: Vec::new(),
                lines: 0,
                writer: WriterState::Busy,
                closed: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
        })
    }

    #[test]
    fn batches_are_written_and_failures_counted() {
        let s = shared();
        for _ in 0..10 {
            push(&s, b"line\n");
        }
        s.lock().closed = true;
        let mut out = Vec::new();
        write_loop(&s, &mut out);
        assert_eq!(out, b"line\n".repeat(10));
        // After closing, a line is counted, not queued.
        push(&s, b"late\n");
        assert_eq!(s.dropped.load(Ordering::Relaxed), 1);

        let s = shared();
        push(&s, b"a\n");
        push(&s, b"b\n");
        s.lock().closed = true;
        write_loop(&s, &mut Broken);
        assert_eq!(s.dropped.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let s = shared();
        let line = vec![b'x'; 1024];
        for _ in 0..(MAX_PENDING / 1024 + 5) {
            push(&s, &line);
        }
        assert_eq!(s.dropped.load(Ordering::Relaxed), 5);
        assert!(s.lock().buf.len() <= MAX_PENDING);
        s.lock().closed = true;
        let mut out = Vec::new();
        write_loop(&s, &mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("WARN access: access log lines dropped") && text.contains("dropped=5"),
            "the drop is reported in the log"
        );
    }
}
