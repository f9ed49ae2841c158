//! The demo echo backend: answers every request with what it received (JSON, or HTML for
//! browsers), plus a few `/__echo/...` helpers and a minimal WebSocket echo for tests.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Request bodies up to this size are echoed back as text; larger ones only by length.
const MAX_ECHOED_BODY: usize = 64 * 1024;
/// Largest WebSocket frame payload the echo accepts.
const MAX_WS_PAYLOAD: u64 = 64 * 1024;
const STREAM_CHUNK: usize = 1024;
const STREAM_DELAY: Duration = Duration::from_millis(10);
const MAX_STREAM_CHUNKS: usize = 100_000;
const MAX_SLOW_MS: u64 = 120_000;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

type EchoBody = BoxBody<Bytes, Infallible>;

/// Serves the echo backend on `listener` until the process ends; one task per connection.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or a reset before accept: keep serving, do not spin.
                tracing::warn!(error = %e, "echo backend: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "echo backend: connection ended with an error");
            }
        });
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<EchoBody>, Infallible> {
    if let Some(accept) = websocket_accept(req.headers()) {
        return Ok(websocket_upgrade(&mut req, &accept));
    }

    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let params: Vec<(String, String)> = query
        .as_deref()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    if path == "/__echo/stream" {
        let chunks = param("chunks")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(10)
            .min(MAX_STREAM_CHUNKS);
        let mut resp = Response::new(ChunkStream::new(chunks).boxed());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(resp);
    }
    if path == "/__echo/slow" {
        let ms = param("ms")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(1000)
            .min(MAX_SLOW_MS);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/__echo/status/") {
        match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(s) if s.as_u16() >= 200 => status = s,
            _ => return Ok(plain(StatusCode::BAD_REQUEST, "bad status code\n")),
        }
    }
    let mut set_cookie = None;
    if path == "/__echo/set-cookie" {
        let name = param("name").unwrap_or("echo");
        let value = param("value").unwrap_or("");
        match HeaderValue::from_str(&format!("{name}={value}; Path=/")) {
            Ok(v) => set_cookie = Some(v),
            Err(_) => return Ok(plain(StatusCode::BAD_REQUEST, "bad cookie\n")),
        }
    }

    if path == "/public/help" {
        let mut r = Response::new(full(help_page()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return Ok(r);
    }
    let wants_html = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| String::from_utf8_lossy(v.as_bytes()).contains("text/html"));
    let method = req.method().to_string();
    let headers = joined_headers(req.headers());
    let (body_length, body_text) = read_body(req.into_body()).await;

    let echo = Echo {
        method,
        path,
        query,
        headers,
        body_length,
        body: body_text,
    };
    let mut resp = echo_response(&echo, wants_html);
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        *resp.body_mut() = empty();
    }
    *resp.status_mut() = status;
    if let Some(v) = set_cookie {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// Switches to a WebSocket that echoes every message back.
fn websocket_upgrade(req: &mut Request<Incoming>, accept: &str) -> Response<EchoBody> {
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                if let Err(e) = websocket_echo(TokioIo::new(upgraded)).await {
                    tracing::debug!(error = %e, "echo backend: websocket ended with an error");
                }
            }
            Err(e) => tracing::debug!(error = %e, "echo backend: upgrade failed"),
        }
    });
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// The echo as HTML (for a browser) or JSON.
fn echo_response(echo: &Echo, wants_html: bool) -> Response<EchoBody> {
    if wants_html {
        let mut r = Response::new(full(echo.html()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    } else {
        let mut r = Response::new(full(echo.json()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

struct Echo {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body_length: u64,
    body: Option<String>,
}

impl Echo {
    fn json(&self) -> String {
        let headers: serde_json::Map<String, serde_json::Value> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut obj = serde_json::json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": headers,
            "body_length": self.body_length,
        });
        if let (Some(body), Some(map)) = (&self.body, obj.as_object_mut()) {
            map.insert("body".into(), serde_json::Value::String(body.clone()));
        }
        obj.to_string()
    }

    /// The page a browser sees after the demo's login: who is logged in, a way to the
    /// portal, and the request as the backend received it (readable at 375 px: the tables
    /// scroll inside their box, long values wrap).
    fn html(&self) -> String {
        let header = |name: &str| {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut s = String::from(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>nidan echo backend</title>\
             <style>body{font-family:sans-serif;margin:0 auto;padding:1em;max-width:60em;line-height:1.5}\
             .scroll{overflow-x:auto}td,th{border:1px solid #767676;padding:.2em .5em;\
             text-align:left;vertical-align:top;overflow-wrap:anywhere}table{border-collapse:collapse;width:100%}\
             nav a{display:inline-block;margin:.2em 1em .2em 0;padding:.4em 0}a{color:#0b57d0}\
             a:focus-visible{outline:3px solid #0b57d0;outline-offset:2px}</style></head><body>\n\
             <header><p><strong>nidan demo</strong></p></header>\n<main>\n<h1>nidan echo backend</h1>\n",
        );
        if let Some(user) = header("remote-user") {
            // Remote-Name carries UTF-8 percent-encoded (a header is ASCII): shown decoded.
            let name = header("remote-name")
                .map(|n| {
                    percent_encoding::percent_decode_str(n)
                        .decode_utf8_lossy()
                        .into_owned()
                })
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "<p>You are logged in as <strong>{}</strong>{}. \
                 <span lang=\"ja\">ログインしています。</span></p>",
                escape(user),
                if name.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", escape(&name))
                }
            );
        }
        s.push_str(
            "<nav aria-label=\"nidan\"><a href=\"/_nidan/\">Your account (portal) \
             <span lang=\"ja\">アカウント</span></a><a href=\"/admin/\">A page that asks \
             for both steps</a><a href=\"/public/help\">Help <span lang=\"ja\">ヘルプ</span></a></nav>\n",
        );
        s.push_str("<h2>Request</h2>\n<div class=\"scroll\"><table>\n");
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\">method</th><td>{}</td></tr>",
            escape(&self.method)
        );
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\">path</th><td>{}</td></tr>",
            escape(&self.path)
        );
        let query = self
            .query
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "<i>none</i>".into());
        let _ = writeln!(s, "<tr><th scope=\"row\">query</th><td>{query}</td></tr>");
        let _ = writeln!(
            s,
            "<tr><th scope=\"row\">body length</th><td>{}</td></tr>",
            self.body_length
        );
        s.push_str(
            "</table></div>\n<h2>Headers</h2>\n<div class=\"scroll\"><table>\n\
             <tr><th scope=\"col\">name</th><th scope=\"col\">value</th></tr>\n",
        );
        for (k, v) in &self.headers {
            let _ = writeln!(s, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
        }
        s.push_str("</table></div>\n");
        if let Some(body) = &self.body
            && !body.is_empty()
        {
            let _ = writeln!(
                s,
                "<h2>Body</h2>\n<pre class=\"scroll\">{}</pre>",
                escape(body)
            );
        }
        s.push_str("</main>\n</body></html>\n");
        s
    }
}

/// The demo's help page (`portal.help_url` and `portal.recovery_url` point here), in
/// Japanese and English.
fn help_page() -> String {
    format!(
        "<!doctype html>\n<html lang=\"ja\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>ヘルプ | nidan demo</title>\
         <style>body{{font-family:sans-serif;margin:0 auto;padding:1em;max-width:40em;line-height:1.6}}\
         a{{color:#0b57d0}}a:focus-visible{{outline:3px solid #0b57d0;outline-offset:2px}}</style>\
         </head><body>\n<main>\n<h1>ヘルプ</h1>\n\
         <h2 id=\"forgot\">IDまたはパスワードをお忘れの方</h2>\n\
         <p>このデモのIDは taro、hanako、jiro で、パスワードはすべて <code>{pw}</code> です。\
         実際のサービスでは、ここに再設定の手続きを案内します。</p>\n\
         <h2>セキュリティコードが届かない方</h2>\n\
         <p>このデモでは、セキュリティコードは nidan を起動した画面に表示されます。</p>\n\
         <p><a href=\"/_nidan/\">ログイン画面へ</a></p>\n\
         <section lang=\"en\">\n<h2 id=\"en\">Help</h2>\n\
         <h3 id=\"forgot-en\">Forgot your ID or password?</h3>\n\
         <p>The demo's IDs are taro, hanako and jiro; every password is <code>{pw}</code>. \
         A real service explains how to reset them here.</p>\n\
         <h3>Security code not arriving?</h3>\n\
         <p>In the demo, security codes are printed where nidan was started.</p>\n\
         <p><a href=\"/_nidan/?lang=en\">To the login page</a></p>\n</section>\n\
         </main>\n</body></html>\n",
        pw = super::PASSWORD
    )
}

/// Header names lower-case (as `http` stores them), repeated values joined with `, `,
/// in order of first appearance.
fn joined_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.push((name.as_str().to_owned(), values.join(", ")));
    }
    out
}

/// Reads the whole body, keeping at most `MAX_ECHOED_BODY` bytes of it.
async fn read_body(mut body: Incoming) -> (u64, Option<String>) {
    let mut len: u64 = 0;
    let mut kept: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            len += data.len() as u64;
            if kept.len() <= MAX_ECHOED_BODY {
                let room = MAX_ECHOED_BODY + 1 - kept.len();
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
    }
    let text = (kept.len() <= MAX_ECHOED_BODY).then(|| String::from_utf8_lossy(&kept).into_owned());
    (len, text)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn full(s: String) -> EchoBody {
    http_body_util::Full::new(Bytes::from(s)).boxed()
}

fn empty() -> EchoBody {
    http_body_util::Empty::new().boxed()
}

fn plain(status: StatusCode, text: &'static str) -> Response<EchoBody> {
    let mut r = Response::new(full(text.to_owned()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// A body of `remaining` 1 KiB chunks, each after a short pause.
struct ChunkStream {
    remaining: usize,
    delay: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ChunkStream {
    fn new(chunks: usize) -> Self {
        Self {
            remaining: chunks,
            delay: None,
        }
    }
}

impl Body for ChunkStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let delay = self
            .delay
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(STREAM_DELAY)));
        if delay.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.delay = None;
        self.remaining -= 1;
        let n = self.remaining;
        // Chunks are distinguishable (a letter per chunk) so tests can check order.
        let byte = b'a' + (n % 26) as u8;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![byte; STREAM_CHUNK])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact((self.remaining * STREAM_CHUNK) as u64)
    }
}

/// `Sec-WebSocket-Accept` for a WebSocket upgrade request, `None` for anything else.
fn websocket_accept(headers: &HeaderMap) -> Option<String> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
    {
        return None;
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)?
        .to_str()
        .ok()?
        .trim();
    Some(accept_key(key))
}

pub(crate) fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Echoes data frames back unmasked with the same FIN bit and opcode (so fragmented
/// messages come back fragmented the same way), answers ping with pong, and mirrors close.
async fn websocket_echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        match io.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => u64::from(io.read_u16().await?),
            127 => io.read_u64().await?,
            n => u64::from(n),
        };
        if len > MAX_WS_PAYLOAD {
            // 1009: message too big.
            write_frame(&mut io, true, OP_CLOSE, &1009u16.to_be_bytes()).await?;
            return io.shutdown().await;
        }
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            OP_CONT | OP_TEXT | OP_BINARY => write_frame(&mut io, fin, opcode, &payload).await?,
            OP_PING => write_frame(&mut io, true, OP_PONG, &payload).await?,
            OP_PONG => {}
            OP_CLOSE => {
                write_frame(&mut io, true, OP_CLOSE, &payload).await?;
                return io.shutdown().await;
            }
            _ => {
                // 1002: protocol error (unknown opcode).
                write_frame(&mut io, true, OP_CLOSE, &1002u16.to_be_bytes()).await?;
                return io.shutdown().await;
            }
        }
    }
}

async fn write_frame<S: AsyncWrite + Unpin>(
    io: &mut S,
    fin: bool,
    opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    io.write_all(&frame).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use tokio::net::TcpStream;

    async fn start() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener));
        addr
    }

    /// Sends a raw HTTP/1.1 request and returns (head, body) of the answer.
    async fn raw(addr: std::net::SocketAddr, request: &str) -> (String, Vec<u8>) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(out[..split].to_vec()).unwrap();
        (head, out[split + 4..].to_vec())
    }

    fn client() -> reqwest::Client {
        pingora::tls::install_default_crypto_provider();
        reqwest::Client::new()
    }

    #[tokio::test]
    async fn json_echo_with_repeated_header_and_raw_path() {
        let addr = start().await;
        let (head, body) = raw(
            addr,
            "POST /a%2Fb/c%20d?x=1&y=%41 HTTP/1.1\r\nHost: h\r\nX-Rep: one\r\nx-rep: two\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a%2Fb/c%20d");
        assert_eq!(v["query"], "x=1&y=%41");
        assert_eq!(v["headers"]["x-rep"], "one, two");
        assert_eq!(v["headers"]["host"], "h");
        assert_eq!(v["body_length"], 5);
        assert_eq!(v["body"], "hello");
    }

    #[tokio::test]
    async fn no_query_is_null() {
        let addr = start().await;
        let v: serde_json::Value = client()
            .get(format!("http://{addr}/plain"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["path"], "/plain");
        assert!(v["query"].is_null());
        assert_eq!(v["body_length"], 0);
    }

    #[tokio::test]
    async fn large_body_reported_by_length_only() {
        let addr = start().await;
        let v: serde_json::Value = client()
            .post(format!("http://{addr}/up"))
            .body(vec![b'x'; 200_000])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["body_length"], 200_000);
        assert!(v.get("body").is_none());
    }

    #[tokio::test]
    async fn html_variant_escapes() {
        let addr = start().await;
        let resp = client()
            .get(format!("http://{addr}/x?q=<script>alert(1)</script>"))
            .header("accept", "text/html,application/xhtml+xml")
            .header("x-evil", "<script>alert(\"h\")</script>")
            .send()
            .await
            .unwrap();
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let text = resp.text().await.unwrap();
        assert!(text.contains("<title>nidan echo backend</title>"));
        assert!(!text.contains("<script>"), "{text}");
        assert!(text.contains("&lt;script&gt;alert(&quot;h&quot;)&lt;/script&gt;"));
        assert!(text.contains("<td>x-evil</td>"));
    }

    #[tokio::test]
    async fn set_cookie_and_status() {
        let addr = start().await;
        let c = client();
        let resp = c
            .get(format!(
                "http://{addr}/__echo/set-cookie?name=nidan_session&value=evil"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["set-cookie"], "nidan_session=evil; Path=/");

        let resp = c
            .get(format!("http://{addr}/__echo/status/418"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 418);
        let resp = c
            .get(format!("http://{addr}/__echo/status/204"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204);
        let resp = c
            .get(format!("http://{addr}/__echo/status/abc"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
    }

    #[tokio::test]
    async fn stream_and_slow() {
        let addr = start().await;
        let c = client();
        let body = c
            .get(format!("http://{addr}/__echo/stream?chunks=5"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), 5 * 1024);

        let started = std::time::Instant::now();
        let resp = c
            .get(format!("http://{addr}/__echo/slow?ms=150"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut f = vec![0x80 | opcode];
        assert!(payload.len() < 126);
        f.push(0x80 | payload.len() as u8);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    async fn read_server_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = (head[1] & 0x7F) as usize;
        assert!(len < 126);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    }

    #[tokio::test]
    async fn websocket_handshake_and_echo() {
        let addr = start().await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        // Read the 101 head byte by byte so no frame bytes are swallowed.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(s.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        // The RFC 6455 example key and answer.
        assert!(
            head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );

        s.write_all(&client_frame(OP_TEXT, "こんにちは".as_bytes()))
            .await
            .unwrap();
        let (b0, payload) = read_server_frame(&mut s).await;
        assert_eq!(b0, 0x80 | OP_TEXT);
        assert_eq!(payload, "こんにちは".as_bytes());

        s.write_all(&client_frame(OP_PING, b"p")).await.unwrap();
        assert_eq!(
            read_server_frame(&mut s).await,
            (0x80 | OP_PONG, b"p".to_vec())
        );

        s.write_all(&client_frame(OP_CLOSE, &1000u16.to_be_bytes()))
            .await
            .unwrap();
        let (b0, payload) = read_server_frame(&mut s).await;
        assert_eq!(b0, 0x80 | OP_CLOSE);
        assert_eq!(payload, 1000u16.to_be_bytes());
    }

    #[test]
    fn accept_key_matches_rfc() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
