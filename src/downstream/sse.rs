//! The 2024-11-05 HTTP+SSE transport: one long GET stream carries every server message; the
//! client POSTs to the URL announced by the stream's `endpoint` event.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;

use super::dispatch::Dispatcher;
use super::http::{
    HttpClient, connect_error, deliver, event_parser, is_event_stream, read_events, status_error,
};
use super::link::{Lifeline, TransportError};
use crate::mcp::sse;

/// How long a server may take to announce its message endpoint.
const ENDPOINT_WAIT: Duration = Duration::from_secs(10);
/// With a configured `message_url`, how long an announcement may still take to win over it
/// (servers that announce do so at once).
const ANNOUNCE_GRACE: Duration = Duration::from_secs(1);

/// An HTTP+SSE session.
#[derive(Clone)]
pub struct SseLink(Arc<Inner>);

struct Inner {
    client: HttpClient,
    post_url: Uri,
    auth: Option<HeaderValue>,
    lifeline: Arc<Lifeline>,
}

impl SseLink {
    /// Opens the event stream, waits for the `endpoint` event, and keeps reading in the
    /// background; the end of the stream ends the connection. `message_url` (configured) is
    /// the POST endpoint when the server announces none.
    pub async fn connect(
        client: HttpClient,
        url: &Uri,
        message_url: Option<&Uri>,
        auth: Option<HeaderValue>,
        dispatcher: Arc<Dispatcher>,
        lifeline: Arc<Lifeline>,
    ) -> Result<Self, TransportError> {
        let mut request = Request::new(Full::<Bytes>::default());
        *request.uri_mut() = url.clone();
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(auth) = &auth {
            request.headers_mut().insert(AUTHORIZATION, auth.clone());
        }
        let response = client.request(request).await.map_err(connect_error)?;
        if !response.status().is_success() {
            return Err(status_error(response, auth.as_ref()).await);
        }
        if !is_event_stream(&response) {
            return Err(TransportError::Invalid(
                "the URL does not serve an SSE stream".into(),
            ));
        }
        let mut body = response.into_body();
        let mut parser = event_parser(&dispatcher);
        let wait = match message_url {
            Some(_) => ANNOUNCE_GRACE,
            None => ENDPOINT_WAIT,
        };
        let announced =
            tokio::time::timeout(wait, endpoint_event(&mut body, &mut parser, &dispatcher)).await;
        let post_url = match (announced, message_url) {
            (Ok(endpoint), _) => resolve(url, &endpoint?)?,
            (Err(_), Some(configured)) => configured.clone(),
            (Err(_), None) => {
                let missing =
                    "no `endpoint` event within 10 s; set `message_url` to the server's POST URL";
                return Err(TransportError::Invalid(missing.into()));
            }
        };
        let link = Self(Arc::new(Inner {
            client,
            post_url,
            auth,
            lifeline: lifeline.clone(),
        }));
        tokio::spawn(async move {
            let token = lifeline.token();
            tokio::select! {
                _ = read_events(body, parser, &dispatcher, None) => lifeline.end("the SSE stream closed"),
                _ = token.cancelled() => {}
            }
        });
        Ok(link)
    }

    /// POSTs one message to the announced endpoint.
    pub async fn post(
        &self,
        message: &Value,
        authorization: Option<&HeaderValue>,
    ) -> Result<(), TransportError> {
        let body = Bytes::from(serde_json::to_vec(message).expect("BUG: JSON always serializes"));
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.0.post_url.clone();
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let sent = authorization.or(self.0.auth.as_ref());
        if let Some(auth) = sent {
            headers.insert(AUTHORIZATION, auth.clone());
        }
        let response = self
            .0
            .client
            .request(request)
            .await
            .map_err(connect_error)?;
        if !response.status().is_success() {
            return Err(status_error(response, sent).await);
        }
        // The answer travels on the event stream; the POST body is only an acknowledgement,
        // read (bounded) only so the connection can be reused.
        let _ = Limited::new(response.into_body(), super::excerpt::READ_LIMIT)
            .collect()
            .await;
        Ok(())
    }

    /// Ends the session (the stream reader stops).
    pub fn close(&self) {
        self.0.lifeline.end("closed by the gateway");
    }
}

/// Waits for the `endpoint` event; the stream's other events meanwhile are delivered, and what
/// follows it stays in `parser` for the stream's reader, so nothing the server sent is lost.
async fn endpoint_event(
    body: &mut Incoming,
    parser: &mut sse::Parser,
    dispatcher: &Dispatcher,
) -> Result<String, TransportError> {
    let mut endpoint = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| TransportError::Connect(error.to_string()))?;
        let Some(chunk) = frame.data_ref() else {
            continue;
        };
        parser.feed_with(chunk, |item| match item {
            sse::Item::Event(event) if endpoint.is_none() && event.event == "endpoint" => {
                endpoint = Some(event.data);
            }
            item => deliver(item, dispatcher, None),
        });
        if let Some(endpoint) = endpoint {
            return Ok(endpoint);
        }
    }
    Err(TransportError::Closed(
        "the SSE stream ended before an `endpoint` event".into(),
    ))
}

/// Resolves the announced endpoint (usually a path with a session query) against the SSE URL.
fn resolve(base: &Uri, endpoint: &str) -> Result<Uri, TransportError> {
    let invalid = |_| TransportError::Invalid(format!("bad `endpoint` event: {endpoint:?}"));
    let announced: Uri = endpoint.trim().parse().map_err(invalid)?;
    if announced.scheme().is_some() {
        return Ok(announced);
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = announced.into_parts().path_and_query;
    Uri::from_parts(parts)
        .map_err(|_| TransportError::Invalid(format!("bad `endpoint` event: {endpoint:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_and_absolute_endpoints() {
        let base: Uri = "http://127.0.0.1:9/sse".parse().unwrap();
        assert_eq!(
            resolve(&base, "/message?sessionId=a").unwrap(),
            "http://127.0.0.1:9/message?sessionId=a"
        );
        assert_eq!(resolve(&base, "http://h:1/m").unwrap(), "http://h:1/m");
    }
}
