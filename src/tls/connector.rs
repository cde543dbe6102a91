//! The hyper connector for downstreams: TCP with `TCP_NODELAY`, then OpenSSL for `https`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use openssl::ssl::{SslVerifyMode, SslVersion};
use openssl::x509::X509StoreContextRef;
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::client::{ClientContext, ClientHandle, peer_index};
use super::errors::{self, Error, HandshakeFacts, VerifyFailure};
use super::ffi;

/// Connects to one downstream; `tls` is used for `https` URIs.
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector,
    tls: Option<ClientHandle>,
}

impl Connector {
    /// A connector with an optional TLS context (required for `https` URIs). The context is read
    /// from the handle at each new connection, so a reload applies to the next one.
    pub fn new(tls: Option<ClientHandle>) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        // Nagle plus delayed ACK costs ~40 ms per small request/response pair.
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(std::time::Duration::from_secs(60)));
        Self { tcp, tls }
    }
}

/// A connection to a downstream, plain or TLS.
pub enum Stream {
    /// `http://`.
    Plain(TokioIo<TcpStream>),
    /// `https://`.
    Tls(TokioIo<TlsIo>),
}

/// A client TLS stream that explains a late rejection: under TLS 1.3 the server checks our
/// certificate after we consider the handshake done, so its refusal (an alert, or just a close
/// before any answer) surfaces on the first read.
pub struct TlsIo {
    stream: SslStream<TcpStream>,
    sent_cert: bool,
    received: bool,
}

impl TlsIo {
    /// Wraps an established stream; `sent_cert` says whether a client certificate is configured.
    pub fn new(stream: SslStream<TcpStream>, sent_cert: bool) -> Self {
        Self {
            stream,
            sent_cert,
            received: false,
        }
    }

    fn late_rejection(&self, error: Option<&io::Error>) -> Option<Error> {
        if self.received {
            return None;
        }
        let tls13 = self.stream.ssl().version2() == Some(SslVersion::TLS1_3);
        match error {
            Some(error) => {
                let alert = error
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<openssl::ssl::Error>())
                    .and_then(|ssl| errors::classify_read(ssl, self.sent_cert));
                // Depending on timing the close shows as a reset or broken pipe instead.
                let reset = matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                );
                alert.or_else(|| {
                    (tls13 && reset).then(|| Error::RejectedAfterHandshake {
                        alert: "closed without an answer".to_owned(),
                        sent: self.sent_cert,
                    })
                })
            }
            None if tls13 => Some(Error::RejectedAfterHandshake {
                alert: "closed without an answer".to_owned(),
                sent: self.sent_cert,
            }),
            None => None,
        }
    }
}

impl tokio::io::AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        let Poll::Ready(result) = polled else {
            return Poll::Pending;
        };
        let eof = result.is_ok() && buf.filled().len() == before && buf.remaining() > 0;
        let rejection = match &result {
            Err(error) => self.late_rejection(Some(error)),
            Ok(()) if eof => self.late_rejection(None),
            Ok(()) => None,
        };
        self.received |= buf.filled().len() > before;
        Poll::Ready(match rejection {
            Some(error) => Err(io::Error::other(error)),
            None => result,
        })
    }
}

impl tokio::io::AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        match polled {
            Poll::Ready(Err(error)) => {
                let rejection = self.late_rejection(Some(&error));
                Poll::Ready(Err(rejection.map_or(error, io::Error::other)))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = self.tls.clone();
        let https = uri.scheme_str() == Some("https");
        let connecting = self.tcp.call(uri.clone());
        Box::pin(async move {
            let tcp = connecting.await?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let tls = tls.ok_or("https URL without a TLS context")?.load_full();
            let host = uri.host().ok_or("URL without a host")?;
            let port = uri.port_u16().unwrap_or(443);
            let stream = handshake(&tls, host, port, tcp.into_inner()).await?;
            Ok(Stream::Tls(TokioIo::new(TlsIo::new(
                stream,
                tls.has_identity,
            ))))
        })
    }
}

/// The TLS handshake with a downstream, with exactly its configured settings: resumes the last
/// session with this peer when there is one, counts the outcome, and classifies a failure.
pub async fn handshake(
    tls: &ClientContext,
    host: &str,
    port: u16,
    tcp: TcpStream,
) -> Result<SslStream<TcpStream>, Error> {
    let host = host.trim_matches(['[', ']']);
    let name = tls.server_name.as_deref().unwrap_or(host);
    let failure = Arc::new(std::sync::Mutex::new(None));
    let ssl = prepare(tls, name, &format!("{host}:{port}"), failure.clone())
        .map_err(|stack| Error::setting("tls", stack))?;
    let mut stream = SslStream::new(ssl, tcp).map_err(|stack| Error::setting("tls", stack))?;
    match Pin::new(&mut stream).connect().await {
        Ok(()) => {
            tls.metrics
                .handshake_done(&tls.server, stream.ssl().session_reused());
            Ok(stream)
        }
        Err(error) => {
            let failure = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
            let error = errors::classify_handshake(HandshakeFacts {
                error: &error,
                failure,
                host: name,
                pinned: tls.pinned,
                sent_cert: tls.has_identity,
            });
            tls.metrics.handshake_failed(&tls.server, error.reason());
            tracing::warn!(server = %tls.server, reason = error.reason(), %error, "TLS handshake failed");
            Err(error)
        }
    }
}

type FailureSlot = Arc<std::sync::Mutex<Option<VerifyFailure>>>;

fn prepare(
    tls: &ClientContext,
    name: &str,
    peer: &str,
    failure: FailureSlot,
) -> Result<openssl::ssl::Ssl, openssl::error::ErrorStack> {
    let mut config = tls.connector.configure()?;
    config.set_ex_data(peer_index(), peer.to_owned());
    if let Some(session) = tls.sessions.get(peer) {
        ffi::resume(&mut config, &session)?;
    }
    if tls.verify_chain {
        // Records the first certificate at fault, for a message naming it (OpenSSL's verify
        // result alone has no date or names); the verdict itself is OpenSSL's.
        config.set_verify_callback(SslVerifyMode::PEER, move |ok, context| {
            let mut slot = failure.lock().unwrap_or_else(|p| p.into_inner());
            if !ok && slot.is_none() {
                *slot = Some(describe_failure(context));
            }
            ok
        });
    }
    config.verify_hostname(tls.verify_hostname).into_ssl(name)
}

fn describe_failure(context: &X509StoreContextRef) -> VerifyFailure {
    let result = context.error();
    let Some(cert) = context.current_cert() else {
        return VerifyFailure {
            result,
            subject: String::new(),
            issuer: String::new(),
            not_before: String::new(),
            not_after: String::new(),
            names: Vec::new(),
        };
    };
    VerifyFailure {
        result,
        subject: super::name_text(cert.subject_name()),
        issuer: super::name_text(cert.issuer_name()),
        not_before: cert.not_before().to_string(),
        not_after: cert.not_after().to_string(),
        names: super::cert_names(cert),
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
