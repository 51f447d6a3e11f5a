//! The open model's own HTTP/1.1 connections: plain TCP or TLS (rustls, with the
//! platform's trust store, so `SSL_CERT_FILE` adds a private CA as it does for curl), the
//! origin-form request line with the URL's authority as Host, and one exchange timed
//! from before the connect to the last byte of the body, within the request timeout.

use crate::scenarios::client::Call;
use crate::scenarios::instances::Endpoint;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, pki_types::ServerName};

pub type Connection = SendRequest<Full<Bytes>>;

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

/// Open a connection to `endpoint`: TCP, then TLS when it is https, then HTTP/1.1.
pub async fn connect(endpoint: &Endpoint, tls: Option<&Tls>) -> Option<Connection> {
    let stream = tokio::net::TcpStream::connect(endpoint.address())
        .await
        .ok()?;
    let _ = stream.set_nodelay(true);
    if endpoint.tls {
        let name = ServerName::try_from(endpoint.host.clone()).ok()?;
        let stream = tls?.0.connect(name, stream).await.ok()?;
        handshake(stream).await
    } else {
        handshake(stream).await
    }
}

async fn handshake<S>(stream: S) -> Option<Connection>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// The HTTP request for `call` in origin form (`POST /v1/payments HTTP/1.1`), with the
/// URL's authority as Host, authenticated with the merchant's key if it names one.
pub fn build(
    endpoint: &Endpoint,
    merchant_key: Option<&str>,
    call: &Call,
) -> Option<hyper::Request<Full<Bytes>>> {
    let mut builder = hyper::Request::builder()
        .method(call.method.as_str())
        .uri(format!("{}{}", endpoint.path_prefix, call.path))
        .header(hyper::header::HOST, endpoint.authority.as_str());
    if let Some(key) = merchant_key {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {key}"));
    }
    if let Some(k) = &call.idempotency_key {
        builder = builder.header("idempotency-key", k.as_str());
    }
    let body = match &call.body {
        Some(b) => {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(b).ok()?)
        }
        None => Bytes::new(),
    };
    builder.body(Full::new(body)).ok()
}

/// Send `call` on `connection`, opening it first when there is none (or it closed), and
/// read the whole answer: connect, send and read all within `timeout`. A failed or late
/// exchange leaves no connection behind (the next request opens a fresh one).
pub async fn exchange(
    endpoint: &Endpoint,
    tls: Option<&Tls>,
    connection: &mut Option<Connection>,
    merchant_key: Option<&str>,
    call: &Call,
    timeout: Duration,
) -> Exchanged {
    // Set just before the request is handed to the connection: until then it certainly
    // never left (no connection, or the timeout came first).
    let mut sent = false;
    let answer = tokio::time::timeout(timeout, async {
        if connection.as_ref().is_none_or(|c| c.is_closed()) {
            *connection = connect(endpoint, tls).await;
        }
        let sender = connection.as_mut()?;
        let request = build(endpoint, merchant_key, call)?;
        sender.ready().await.ok()?;
        sent = true;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, bytes))
    })
    .await
    .ok()
    .flatten();
    let finished = Instant::now();
    if answer.is_none() {
        *connection = None;
    }
    Exchanged {
        answer,
        unsent: !sent,
        finished,
    }
}
