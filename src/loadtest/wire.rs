//! The open model's own HTTP/1.1 connections: plain TCP or TLS (rustls, with the
//! platform's trust store, so `SSL_CERT_FILE` adds a private CA as it does for curl), the
//! origin-form request line with the URL's authority as Host, and one exchange timed
//! from before the connect to the last byte of the body, within the request timeout.
//!
//! Why not hyper's client here, when the rest of paytool uses hyper: a load generator's
//! connection does one thing (one request, then its whole answer, in the task that sent
//! it), and hyper's general machinery for it (a dispatcher behind channels, header maps,
//! a request builder) was about a third of the generator's CPU a request on /healthz,
//! which kept it below wrk. What is left is what wrk does: the request written into a
//! reused buffer, the answer read into another and parsed by `httparse` (hyper's own
//! parser), Content-Length and chunked bodies, keep-alive unless the server closes.

use crate::scenarios::client::Call;
use crate::scenarios::instances::Endpoint;
use bytes::{Buf, Bytes, BytesMut};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

/// An answer's head larger than this is refused (the reference API's are ~300 bytes).
const HEAD_MAX: usize = 64 * 1024;
/// An answer's body larger than this is refused: a bound on what one answer can hold.
const BODY_MAX: usize = 64 * 1024 * 1024;
/// Headers parsed in an answer's head, at most.
const HEADERS_MAX: usize = 64;
/// A keep-alive connection unused this long is checked for a close by the server before
/// it is used again (busier ones are not: the check costs a system call).
const IDLE_CHECK_AFTER: Duration = Duration::from_millis(100);
/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<S: AsyncRead + AsyncWrite + Send + Unpin> Stream for S {}

/// One keep-alive HTTP/1.1 connection and its reused buffers.
pub struct Connection {
    stream: Box<dyn Stream>,
    /// Bytes read and not yet taken as an answer.
    input: BytesMut,
    /// The request being written.
    output: Vec<u8>,
    /// When its last answer ended.
    last_used: Instant,
}

/// TLS for every https instance of a run, built once.
#[derive(Clone)]
pub struct Tls(TlsConnector);

impl Tls {
    /// The platform's verifier (the system trust store, plus `SSL_CERT_FILE`), HTTP/1.1
    /// by ALPN.
    pub fn new() -> Result<Tls, String> {
        use rustls_platform_verifier::ConfigVerifierExt;
        let mut config = rustls::ClientConfig::with_platform_verifier()
            .map_err(|e| format!("TLS: cannot load the platform's trust store: {e}"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(TlsConnector::from(Arc::new(config))))
    }
}

/// What one exchange came to: the answer (None: no connection could be made, or no
/// whole answer came in time), whether the request certainly never left, and when
/// the last byte arrived (the end of the timed region: judging the body is not in it).
pub struct Exchanged {
    pub answer: Option<(u16, Bytes)>,
    pub unsent: bool,
    pub finished: Instant,
}

/// Open a connection to `endpoint`: TCP, then TLS when it is https.
pub async fn connect(endpoint: &Endpoint, tls: Option<&Tls>) -> Option<Connection> {
    let stream = tokio::net::TcpStream::connect(endpoint.address())
        .await
        .ok()?;
    let _ = stream.set_nodelay(true);
    let stream: Box<dyn Stream> = if endpoint.tls {
        let name = ServerName::try_from(endpoint.host.clone()).ok()?;
        Box::new(tls?.0.connect(name, stream).await.ok()?)
    } else {
        Box::new(stream)
    };
    Some(Connection {
        stream,
        input: BytesMut::with_capacity(READ_CHUNK),
        output: Vec::with_capacity(1024),
        last_used: Instant::now(),
    })
}

/// A value fit for a header line: no CR or LF to end it early.
fn header_safe(v: &str) -> bool {
    !v.bytes().any(|b| b == b'\r' || b == b'\n')
}

/// Write the HTTP request for `call` into `out`, in origin form (`POST /v1/payments
/// HTTP/1.1`) with the URL's authority as Host, authenticated with the merchant's key if
/// it names one. None when a value cannot be sent as a header or the body as JSON.
fn encode(
    out: &mut Vec<u8>,
    endpoint: &Endpoint,
    merchant_key: Option<&str>,
    call: &Call,
) -> Option<()> {
    out.clear();
    let target_ok = !call
        .path
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b < 0x20);
    if !target_ok || !header_safe(&endpoint.path_prefix) {
        return None;
    }
    write!(
        out,
        "{} {}{} HTTP/1.1\r\nhost: {}\r\n",
        call.method.as_str(),
        endpoint.path_prefix,
        call.path,
        endpoint.authority
    )
    .ok()?;
    if let Some(key) = merchant_key {
        header_safe(key).then_some(())?;
        write!(out, "authorization: Bearer {key}\r\n").ok()?;
    }
    if let Some(k) = &call.idempotency_key {
        header_safe(k).then_some(())?;
        write!(out, "idempotency-key: {k}\r\n").ok()?;
    }
    match &call.body {
        Some(body) => {
            let json = serde_json::to_vec(body).ok()?;
            write!(
                out,
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
                json.len()
            )
            .ok()?;
            out.extend_from_slice(&json);
        }
        // A body-less POST still says so, as curl and hyper do.
        None if call.method.as_str() != "GET" => {
            out.extend_from_slice(b"content-length: 0\r\n\r\n")
        }
        None => out.extend_from_slice(b"\r\n"),
    }
    Some(())
}

/// How an answer's body is framed.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// An answer's head: status, framing, and whether the connection stays open after it.
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    len: usize,
}

/// Parse the head at the start of `input`; None while it is incomplete, Err when it is
/// not HTTP/1.x.
fn parse_head(input: &[u8]) -> Result<Option<Head>, ()> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let len = match response.parse(input).map_err(|_| ())? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.ok_or(())?;
    let mut framing = Framing::UntilClose;
    // HTTP/1.1 keeps the connection open unless told; HTTP/1.0 closes it unless told.
    let mut keep_alive = response.version == Some(1);
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).map_err(|_| ())?;
            framing = Framing::Length(n.trim().parse().map_err(|_| ())?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("connection") {
            if h.value.eq_ignore_ascii_case(b"close") {
                keep_alive = false;
            } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                keep_alive = true;
            }
        }
    }
    // No body at all, whatever the headers say (RFC 9112 section 6.3).
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    if matches!(framing, Framing::UntilClose) {
        keep_alive = false;
    }
    Ok(Some(Head {
        status,
        framing,
        keep_alive,
        len,
    }))
}

impl Connection {
    /// Read more into `input`: Some(bytes read, 0 at the end of the stream), None on an
    /// error.
    async fn fill(&mut self) -> Option<usize> {
        if self.input.capacity() - self.input.len() < READ_CHUNK / 2 {
            self.input.reserve(READ_CHUNK);
        }
        self.stream.read_buf(&mut self.input).await.ok()
    }

    /// Read more into `input`, where the answer is not over: None at the end of the
    /// stream too.
    async fn more(&mut self) -> Option<()> {
        (self.fill().await? > 0).then_some(())
    }

    /// Has the server closed this idle connection (or sent something unasked)? Checked
    /// without waiting.
    async fn closed_while_idle(&mut self) -> bool {
        let stream = &mut self.stream;
        let mut probe = [0u8; 1];
        std::future::poll_fn(|cx| {
            let mut buf = tokio::io::ReadBuf::new(&mut probe);
            match std::pin::Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                // End of stream, an error, or a stray byte: not a connection to reuse.
                std::task::Poll::Ready(_) => std::task::Poll::Ready(true),
                std::task::Poll::Pending => std::task::Poll::Ready(false),
            }
        })
        .await
    }

    /// Write the encoded request, then read its whole answer. Some(answer, keep-alive).
    async fn round_trip(&mut self, sent: &mut bool) -> Option<(u16, Bytes, bool)> {
        *sent = true;
        self.stream.write_all(&self.output).await.ok()?;
        self.stream.flush().await.ok()?;
        let head = loop {
            match parse_head(&self.input) {
                Ok(Some(head)) => break head,
                Ok(None) if self.input.len() < HEAD_MAX => {}
                _ => return None,
            }
            self.more().await?;
        };
        self.input.advance(head.len);
        let body = match head.framing {
            Framing::Length(n) => {
                (n <= BODY_MAX).then_some(())?;
                while self.input.len() < n {
                    self.more().await?;
                }
                self.input.split_to(n).freeze()
            }
            Framing::Chunked => self.read_chunked().await?,
            Framing::UntilClose => {
                while self.fill().await? > 0 {
                    (self.input.len() <= BODY_MAX).then_some(())?;
                }
                self.input.split().freeze()
            }
        };
        // Anything after the answer was not asked for: do not reuse the connection.
        let keep_alive = head.keep_alive && self.input.is_empty();
        Some((head.status, body, keep_alive))
    }

    /// A chunked body, its chunks joined; the trailer section is read and dropped.
    async fn read_chunked(&mut self) -> Option<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let (start, size) = loop {
                match httparse::parse_chunk_size(&self.input) {
                    Ok(httparse::Status::Complete((start, size))) => break (start, size),
                    Ok(httparse::Status::Partial) if self.input.len() < HEAD_MAX => {}
                    _ => return None,
                }
                self.more().await?;
            };
            let size = usize::try_from(size).ok()?;
            (body.len() + size <= BODY_MAX).then_some(())?;
            if size == 0 {
                self.input.advance(start);
                // Trailers (none expected), then the empty line.
                loop {
                    if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                        self.input.advance(end + 2);
                        if end == 0 {
                            return Some(body.freeze());
                        }
                        continue;
                    }
                    (self.input.len() < HEAD_MAX).then_some(())?;
                    self.more().await?;
                }
            }
            // The chunk's data and its closing CRLF.
            while self.input.len() < start + size + 2 {
                self.more().await?;
            }
            (&self.input[start + size..start + size + 2] == b"\r\n").then_some(())?;
            body.extend_from_slice(&self.input[start..start + size]);
            self.input.advance(start + size + 2);
        }
    }
}

/// Send `call` on `connection`, opening it first when there is none (or the server
/// closed it while idle), and read the whole answer: connect, send and read all within
/// `timeout`. A failed or late exchange, or an answer after which the server closes,
/// leaves no connection behind (the next request opens a fresh one).
pub async fn exchange(
    endpoint: &Endpoint,
    tls: Option<&Tls>,
    connection: &mut Option<Connection>,
    merchant_key: Option<&str>,
    call: &Call,
    timeout: Duration,
) -> Exchanged {
    // Set just before the request is written: until then it certainly never left (no
    // connection, a request that cannot be encoded, or the timeout came first).
    let mut sent = false;
    let mut keep = false;
    let answer = tokio::time::timeout(timeout, async {
        if let Some(c) = connection.as_mut()
            && c.last_used.elapsed() >= IDLE_CHECK_AFTER
            && c.closed_while_idle().await
        {
            *connection = None;
        }
        if connection.is_none() {
            *connection = connect(endpoint, tls).await;
        }
        let c = connection.as_mut()?;
        encode(&mut c.output, endpoint, merchant_key, call)?;
        let (status, body, keep_alive) = c.round_trip(&mut sent).await?;
        keep = keep_alive;
        Some((status, body))
    })
    .await
    .ok()
    .flatten();
    let finished = Instant::now();
    match connection.as_mut() {
        Some(c) if keep => c.last_used = finished,
        _ => *connection = None,
    }
    Exchanged {
        answer,
        unsent: !sent,
        finished,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::net::TcpListener;

    /// A peer on 127.0.0.1 answering each request head with the next of `script`, closing
    /// the connection after an answer marked so (the next request finds it closed). It
    /// counts the connections it accepted.
    async fn peer(script: Vec<(&'static str, bool)>) -> (Endpoint, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Endpoint::of(&format!("http://{}", listener.local_addr().unwrap()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut script = script.into_iter();
            'accept: while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = socket.read(&mut buf).await {
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let Some((answer, close)) = script.next() else {
                            return;
                        };
                        socket.write_all(answer.as_bytes()).await.unwrap();
                        if close {
                            continue 'accept;
                        }
                    }
                }
            }
        });
        (endpoint, accepted)
    }

    async fn get(endpoint: &Endpoint, connection: &mut Option<Connection>) -> Exchanged {
        let call = Call::get("/healthz", "healthz", None);
        exchange(
            endpoint,
            None,
            connection,
            None,
            &call,
            Duration::from_secs(5),
        )
        .await
    }

    fn body(e: &Exchanged) -> (u16, &[u8]) {
        let (status, body) = e.answer.as_ref().expect("a whole answer");
        (*status, body)
    }

    #[tokio::test]
    async fn sized_and_chunked_answers_are_read_whole_on_one_kept_connection() {
        let (endpoint, accepted) = peer(vec![
            ("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", false),
            (
                "HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
                false,
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", false),
        ])
        .await;
        let mut connection = None;
        assert_eq!(
            body(&get(&endpoint, &mut connection).await),
            (200, &b"hello"[..])
        );
        assert_eq!(
            body(&get(&endpoint, &mut connection).await),
            (201, &b"abcde"[..])
        );
        assert_eq!(
            body(&get(&endpoint, &mut connection).await),
            (204, &b""[..])
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one keep-alive connection"
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_not_failed() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let (endpoint, accepted) = peer(vec![
            (ok, true),
            (
                "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                true,
            ),
            (ok, false),
        ])
        .await;
        let mut connection = None;
        assert_eq!(body(&get(&endpoint, &mut connection).await).0, 200);
        // Idle past the check: the server's close is seen before the request is sent.
        tokio::time::sleep(IDLE_CHECK_AFTER * 2).await;
        assert_eq!(body(&get(&endpoint, &mut connection).await).0, 200);
        // "connection: close" leaves nothing to reuse, at once.
        assert!(connection.is_none());
        assert_eq!(body(&get(&endpoint, &mut connection).await).0, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_answer_cut_short_is_no_answer_and_the_request_counts_as_sent() {
        let (endpoint, _) = peer(vec![(
            "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc",
            true,
        )])
        .await;
        let mut connection = None;
        let e = get(&endpoint, &mut connection).await;
        assert!(e.answer.is_none() && !e.unsent && connection.is_none());
    }

    #[tokio::test]
    async fn no_listener_means_unsent() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = Endpoint::of(&format!("http://{}", listener.local_addr().unwrap()));
        drop(listener);
        let e = get(&endpoint, &mut None).await;
        assert!(e.answer.is_none() && e.unsent);
    }

    fn head(s: &str) -> Head {
        parse_head(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn heads_say_how_the_body_ends_and_whether_the_connection_stays() {
        let h = head("HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\n");
        assert!(matches!(h.framing, Framing::Length(12)) && h.keep_alive && h.status == 200);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
        assert!(matches!(h.framing, Framing::Chunked) && !h.keep_alive);
        let h = head("HTTP/1.0 503 Service Unavailable\r\n\r\n");
        assert!(matches!(h.framing, Framing::UntilClose) && !h.keep_alive);
        let h = head("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n");
        assert!(matches!(h.framing, Framing::Length(0)) && h.keep_alive);
        assert!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-le")
                .unwrap()
                .is_none()
        );
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n").is_err());
    }

    #[test]
    fn requests_with_a_line_break_in_a_header_are_never_written() {
        let endpoint = Endpoint::of("http://127.0.0.1:1");
        let mut call = Call::get("/v1/payments", "list", None);
        let mut out = Vec::new();
        assert!(encode(&mut out, &endpoint, Some("sk_1"), &call).is_some());
        assert!(out.starts_with(b"GET /v1/payments HTTP/1.1\r\nhost: 127.0.0.1:1\r\n"));
        assert!(out.ends_with(b"authorization: Bearer sk_1\r\n\r\n"));
        assert!(encode(&mut out, &endpoint, Some("sk\r\nx: y"), &call).is_none());
        call.idempotency_key = Some("k\n".into());
        assert!(encode(&mut out, &endpoint, None, &call).is_none());
        call.idempotency_key = None;
        call.path = "/v1/payments HTTP/1.0\r\n".into();
        assert!(encode(&mut out, &endpoint, None, &call).is_none());
    }
}
