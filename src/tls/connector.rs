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
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::ClientContext;

/// Connects to one downstream; `tls` is used for `https` URIs.
#[derive(Clone)]
pub struct Connector {
    tcp: HttpConnector,
    tls: Option<Arc<ClientContext>>,
}

impl Connector {
    /// A connector with an optional TLS context (required for `https` URIs).
    pub fn new(tls: Option<Arc<ClientContext>>) -> Self {
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
    Tls(TokioIo<SslStream<TcpStream>>),
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
            let tls = tls.ok_or("https URL without a TLS context")?;
            let host = uri.host().ok_or("URL without a host")?;
            Ok(Stream::Tls(TokioIo::new(
                handshake(&tls, host, tcp.into_inner()).await?,
            )))
        })
    }
}

async fn handshake(
    tls: &ClientContext,
    host: &str,
    tcp: TcpStream,
) -> Result<SslStream<TcpStream>, BoxError> {
    let name = tls
        .server_name
        .as_deref()
        .unwrap_or(host.trim_matches(['[', ']']));
    let ssl = tls
        .connector
        .configure()?
        .verify_hostname(tls.verify_hostname)
        .into_ssl(name)?;
    let mut stream = SslStream::new(ssl, tcp)?;
    Pin::new(&mut stream).connect().await?;
    Ok(stream)
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
