//! A WebSocket tunnel through the gateway, held open by a test: the handshake, one echoed
//! frame at a time, and waiting for the gateway to close it (SECURITY 30, 46).
#![allow(dead_code, clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Tunnel {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Opens a WebSocket on `path` with `extra` header lines (each ending in CRLF); the status
/// of the handshake answer when it is not 101.
pub async fn open(addr: SocketAddr, path: &str, extra: &str) -> Result<Tunnel, u16> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return Err(0),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(status);
    }
    let mut t = Tunnel { stream, buf };
    assert!(t.echoes().await, "a new tunnel echoes");
    Ok(t)
}

impl Tunnel {
    /// One masked text frame through the tunnel: whether its echo came back.
    pub async fn echoes(&mut self) -> bool {
        let payload = b"still there?";
        let mask = [0x21u8, 0x43, 0x65, 0x07];
        let mut frame = vec![0x81, 0x80 | u8::try_from(payload.len()).unwrap()];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        if self.stream.write_all(&frame).await.is_err() {
            return false;
        }
        let want = 2 + payload.len();
        while self.buf.len() < want {
            let mut chunk = [0u8; 4096];
            // Generous: on a machine busy with a browser walk an echo can take seconds; a
            // closed tunnel answers at once (end of stream) whatever the bound.
            match tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut chunk)).await
            {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return false,
            }
        }
        self.buf.drain(..want);
        true
    }

    /// Waits until the gateway closes the tunnel; how long that took (`None`: still open
    /// after `limit`). Nothing is sent meanwhile: an idle tunnel must end too.
    pub async fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        let mut chunk = [0u8; 1024];
        loop {
            let left = limit.checked_sub(started.elapsed())?;
            match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                Ok(Ok(_)) => {}
            }
        }
    }
}
