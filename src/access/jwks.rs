//! The authorization server's signing keys: fetched at start and every `poll_interval`
//! through the gateway's own OpenSSL connector (`[server.oauth.tls]`), re-read when a token
//! names a `kid` the set lacks (such re-reads at most once per [`MIN_REFETCH`], concurrent
//! misses sharing one fetch; the start and the poll do not count against it, so a key rotated
//! in just after them is fetched at once), and retried with backoff while unreachable. Until a first set arrives every token is
//! refused as unverifiable; a set that was fetched once is kept while later fetches fail.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::ACCEPT;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use serde_json::Value;

use super::jwk::{JwksError, KeySet, MAX_JWKS_BYTES};
use crate::config::{JwksSource, Oauth};
use crate::downstream::backoff::Backoff;
use crate::downstream::http::describe_request_error;
use crate::metrics::Metrics;
use crate::tls::{ClientContext, Connector};

/// Shortest time between two fetches of the JWKS caused by unknown `kid`s, so that tokens
/// with made-up `kid`s cannot make the gateway hammer the authorization server.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// How long one fetch (connect, TLS, answer) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The `[server.oauth.tls]` context's name in metrics and TLS messages.
const TLS_NAME: &str = "server.oauth";

type Client = hyper_util::client::legacy::Client<Connector, Empty<Bytes>>;

/// The key set in force, numbered so that a caller can tell whether it changed since it looked.
pub struct Keys {
    /// The keys, or why there are none yet (for logs, never for the client).
    pub set: Result<Arc<KeySet>, String>,
    /// Incremented by every successful fetch.
    pub generation: u64,
    /// When the fetch of `set` began (Unix seconds; 0 before the first): a token issued after
    /// it may be signed with a key the set cannot have yet.
    pub fetched_at: u64,
}

/// What a re-read asked for by an unknown `kid` gave.
pub enum Refetch {
    /// The keys after a fetch (this one, or another that finished meanwhile).
    Done(Arc<Keys>),
    /// No fetch: the last one caused by a `kid` is younger than [`MIN_REFETCH`]; the next is
    /// allowed after this long.
    Declined(Arc<Keys>, Duration),
}

/// Why a fetch failed; names the URL and the cause (never a token: none is involved).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Connect, TLS or read failure, or the timeout.
    #[error("GET {url}: {reason}")]
    Transport {
        /// The document's URL.
        url: Uri,
        /// The cause chain.
        reason: String,
    },
    /// Not 200.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// The document's URL.
        url: Uri,
        /// What the server answered.
        status: StatusCode,
    },
    /// Over [`MAX_JWKS_BYTES`].
    #[error("GET {url}: the document is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge {
        /// The document's URL.
        url: Uri,
    },
    /// The JWKS was read but is unusable.
    #[error("{url}: {error}")]
    Jwks {
        /// The JWKS URL.
        url: Uri,
        /// What is wrong with it.
        error: JwksError,
    },
    /// Neither discovery document gave a usable `jwks_uri`.
    #[error(
        "discovering the JWKS of issuer {issuer}: {reason}; set [server.oauth] url to the JWKS URL"
    )]
    Discovery {
        /// `expected_issuer`.
        issuer: Uri,
        /// What each document said.
        reason: String,
    },
}

/// The signing keys and how to get them again.
pub struct KeyStore {
    keys: ArcSwap<Keys>,
    fetcher: Fetcher,
    // Held across a fetch on purpose: it is the single flight that concurrent `kid` misses
    // and the poller share (no request waits on it unless its token named an unknown `kid`).
    // It holds when the last fetch caused by a `kid` began.
    last_kid_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl KeyStore {
    /// A store with no keys yet; `metrics` counts the `[server.oauth.tls]` handshakes. Fails
    /// when the TLS material cannot be loaded.
    pub fn new(oauth: &Oauth, metrics: Arc<Metrics>) -> Result<Self, crate::tls::Error> {
        Ok(Self {
            keys: ArcSwap::from_pointee(Keys {
                set: Err("the signing keys have not been fetched yet".to_owned()),
                generation: 0,
                fetched_at: 0,
            }),
            fetcher: Fetcher::new(oauth, metrics)?,
            last_kid_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The keys in force.
    pub fn current(&self) -> Arc<Keys> {
        self.keys.load_full()
    }

    /// The keys after a token named a `kid` missing from generation `seen`: a fresh fetch,
    /// unless another one finished meanwhile or the last one is less than [`MIN_REFETCH`] old.
    pub async fn after_unknown_kid(&self, seen: u64) -> Refetch {
        let mut last = self.last_kid_fetch.lock().await;
        let current = self.current();
        if current.generation != seen {
            return Refetch::Done(current);
        }
        if let Some(wait) = last.and_then(|at| MIN_REFETCH.checked_sub(at.elapsed())) {
            return Refetch::Declined(current, wait);
        }
        *last = Some(Instant::now());
        self.fetch_and_store("a token named an unknown kid").await;
        Refetch::Done(self.current())
    }

    /// Fetches now; whether the fetch succeeded.
    async fn refresh(&self, why: &str) -> bool {
        let _single_flight = self.last_kid_fetch.lock().await;
        self.fetch_and_store(why).await
    }

    async fn fetch_and_store(&self, why: &str) -> bool {
        let previous = self.current();
        let started = unix_seconds();
        match self.fetcher.fetch().await {
            Ok((url, set)) => {
                let now = kids(&set);
                if previous.set.as_ref().map(|old| kids(old)).ok() != Some(now.clone()) {
                    tracing::info!(%url, keys = set.keys.len(), skipped = set.skipped, kids = %now.join(","), why, "OAuth signing keys fetched");
                }
                self.keys.store(Arc::new(Keys {
                    set: Ok(Arc::new(set)),
                    generation: previous.generation + 1,
                    fetched_at: started,
                }));
                true
            }
            Err(error) if previous.set.is_ok() => {
                tracing::warn!(%error, why, "re-reading the OAuth signing keys failed; keeping the previous ones");
                false
            }
            Err(error) => {
                tracing::error!(%error, why, "cannot fetch the OAuth signing keys: MCP requests are answered 503 until they are fetched");
                self.keys.store(Arc::new(Keys {
                    set: Err(error.to_string()),
                    generation: previous.generation,
                    fetched_at: previous.fetched_at,
                }));
                false
            }
        }
    }

    /// Keeps the keys fresh: every `poll` once fetched, with backoff until then. Runs until
    /// aborted.
    pub async fn maintain(self: Arc<Self>, poll: Duration) {
        let mut backoff = Backoff::default();
        let mut why = "start";
        loop {
            let pause = if self.refresh(why).await {
                backoff = Backoff::default();
                why = "poll_interval";
                poll
            } else {
                let pause = backoff.next_delay();
                tracing::info!(
                    seconds = pause.as_secs_f32(),
                    "retrying the OAuth signing keys"
                );
                why = "retry";
                pause
            };
            tokio::time::sleep(pause).await;
        }
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn kids(set: &KeySet) -> Vec<String> {
    set.keys
        .iter()
        .map(|key| key.kid.clone().unwrap_or_else(|| "(no kid)".to_owned()))
        .collect()
}

/// Fetches the JWKS (finding its URL first when only the issuer is configured).
struct Fetcher {
    client: Client,
    source: JwksSource,
    // The `jwks_uri` found by discovery, reused by later fetches; a failed JWKS fetch clears
    // it so the next one discovers again.
    discovered: std::sync::Mutex<Option<Uri>>,
}

impl Fetcher {
    fn new(oauth: &Oauth, metrics: Arc<Metrics>) -> Result<Self, crate::tls::Error> {
        let origin = match &oauth.jwks {
            JwksSource::Url(url) | JwksSource::Discover(url) => url,
        };
        // A discovered `jwks_uri` on another scheme than the issuer is refused, so one context
        // (or none, for plain HTTP on loopback) serves every document.
        let tls = if origin.scheme_str() == Some("https") {
            Some(ClientContext::handle(TLS_NAME, &oauth.tls, metrics)?)
        } else {
            None
        };
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(Connector::new(tls));
        Ok(Self {
            client,
            source: oauth.jwks.clone(),
            discovered: std::sync::Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<(Uri, KeySet), FetchError> {
        let url = match &self.source {
            JwksSource::Url(url) => url.clone(),
            JwksSource::Discover(issuer) => self.jwks_uri(issuer).await?,
        };
        let parsed = self.get(&url).await.and_then(|body| {
            KeySet::parse(&body).map_err(|error| FetchError::Jwks {
                url: url.clone(),
                error,
            })
        });
        if parsed.is_err() {
            *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        parsed.map(|set| (url, set))
    }

    /// `jwks_uri` from the RFC 8414 metadata, else the OpenID Connect discovery document; the
    /// document must name `issuer` as its issuer (RFC 8414 §3.3), so a document served
    /// elsewhere cannot substitute its own keys.
    async fn jwks_uri(&self, issuer: &Uri) -> Result<Uri, FetchError> {
        if let Some(known) = self
            .discovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(known);
        }
        let mut reasons = Vec::new();
        for url in discovery_urls(issuer) {
            match self.get(&url).await.map(|body| jwks_uri_in(&body, issuer)) {
                Ok(Ok(found)) => {
                    *self.discovered.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(found.clone());
                    return Ok(found);
                }
                Ok(Err(reason)) => reasons.push(format!("{url}: {reason}")),
                Err(error) => reasons.push(error.to_string()),
            }
        }
        Err(FetchError::Discovery {
            issuer: issuer.clone(),
            reason: reasons.join("; "),
        })
    }

    /// A 200 answer's body, at most [`MAX_JWKS_BYTES`], within [`FETCH_TIMEOUT`].
    async fn get(&self, url: &Uri) -> Result<Bytes, FetchError> {
        let transport = |reason: String| FetchError::Transport {
            url: url.clone(),
            reason,
        };
        let mut request = Request::get(url.clone())
            .body(Empty::new())
            .map_err(|error| transport(error.to_string()))?;
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("application/json"));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| transport(describe_request_error(&error)))?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status {
                    url: url.clone(),
                    status: response.status(),
                });
            }
            match Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
            {
                Ok(body) => Ok(body.to_bytes()),
                Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                    Err(FetchError::TooLarge { url: url.clone() })
                }
                Err(error) => Err(transport(format!("reading the answer failed: {error}"))),
            }
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(transport(format!(
                    "no answer within {} s",
                    FETCH_TIMEOUT.as_secs()
                )))
            })
    }
}

/// RFC 8414 §3.1 inserts the well-known segment before the issuer's path; OpenID Connect
/// Discovery appends it.
fn discovery_urls(issuer: &Uri) -> Vec<Uri> {
    let origin = format!(
        "{}://{}",
        issuer.scheme_str().unwrap_or("https"),
        issuer.authority().map_or("", |a| a.as_str())
    );
    let path = issuer.path().trim_end_matches('/');
    [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}{path}/.well-known/openid-configuration"),
    ]
    .iter()
    .filter_map(|url| url.parse().ok())
    .collect()
}

/// The `jwks_uri` of a discovery document, checked against the configured issuer.
fn jwks_uri_in(body: &[u8], issuer: &Uri) -> Result<Uri, String> {
    let document: Value =
        serde_json::from_slice(body).map_err(|_| "the document is not JSON".to_owned())?;
    let named = document.get("issuer").and_then(Value::as_str);
    let expected = issuer.to_string();
    if named.map(|n| n.trim_end_matches('/')) != Some(expected.trim_end_matches('/')) {
        return Err(format!(
            "it names issuer {} instead of {expected}",
            named.unwrap_or("(none)")
        ));
    }
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or("it has no jwks_uri")?;
    let uri: Uri = jwks_uri
        .parse()
        .map_err(|_| format!("its jwks_uri `{jwks_uri}` is not a URL"))?;
    if uri.scheme_str() != issuer.scheme_str() || uri.host().is_none() {
        return Err(format!(
            "its jwks_uri `{jwks_uri}` must be an absolute {} URL like the issuer",
            issuer.scheme_str().unwrap_or("https")
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_inserts_and_appends_the_well_known_path() {
        let urls = discovery_urls(&"https://as.example/tenant/".parse().unwrap());
        assert_eq!(
            urls.iter().map(Uri::to_string).collect::<Vec<_>>(),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant",
                "https://as.example/tenant/.well-known/openid-configuration",
            ]
        );
        let urls = discovery_urls(&"https://as.example".parse().unwrap());
        assert_eq!(
            urls[0].to_string(),
            "https://as.example/.well-known/oauth-authorization-server"
        );
    }

    #[test]
    fn a_discovery_document_must_name_the_issuer_and_a_same_scheme_jwks_uri() {
        let issuer: Uri = "https://as.example".parse().unwrap();
        let doc = |iss: &str, jwks: &str| format!(r#"{{"issuer":"{iss}","jwks_uri":"{jwks}"}}"#);
        assert_eq!(
            jwks_uri_in(
                doc("https://as.example", "https://as.example/k").as_bytes(),
                &issuer
            ),
            Ok("https://as.example/k".parse().unwrap())
        );
        assert_eq!(
            jwks_uri_in(doc("https://evil", "https://evil/k").as_bytes(), &issuer),
            Err("it names issuer https://evil instead of https://as.example/".to_owned())
        );
        assert!(
            jwks_uri_in(
                doc("https://as.example", "http://as.example/k").as_bytes(),
                &issuer
            )
            .is_err()
        );
    }
}
