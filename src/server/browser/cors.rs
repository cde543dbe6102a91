//! The CORS protocol (Fetch standard): preflight answers and the grant on actual responses.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};

use crate::config::{self, AnyOr, OriginPattern};
use crate::server::body::{self, Body};

/// Request headers an MCP client in a browser sends: allowed whatever `allow_headers` says,
/// since without them no MCP request passes a preflight.
const MCP_REQUEST_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
];
/// Response headers a browser client must read: the session it was given, why a token was
/// refused (the OAuth discovery starts there), how long to wait after a 429.
const MCP_RESPONSE_HEADERS: &[&str] = &["mcp-session-id", "www-authenticate", "retry-after"];
/// `allow_methods` when not set: what the MCP endpoint serves.
const DEFAULT_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const REQUEST_PRIVATE_NETWORK: &str = "access-control-request-private-network";
const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";

/// `[server.cors]` with its header values built once.
pub(super) struct Cors {
    origins: AnyOr<OriginPattern>,
    methods: Listed,
    headers: Listed,
    expose: HeaderValue,
    credentials: bool,
    max_age: Option<HeaderValue>,
    private_network: bool,
}

/// An `Access-Control-Allow-*` value: fixed, or the request's own (for `"*"`, which browsers
/// read literally on credentialed requests and never apply to `Authorization`).
enum Listed {
    Fixed(HeaderValue),
    Mirror,
}

impl Cors {
    /// The grant for `config`; `csrf` is the header `[server.csrf]` requires, allowed too.
    pub(super) fn new(config: &config::Cors, csrf: Option<&HeaderName>) -> Self {
        let methods = match &config.allow_methods {
            None => Listed::Fixed(HeaderValue::from_static(DEFAULT_METHODS)),
            Some(AnyOr::Any) => Listed::Mirror,
            Some(AnyOr::List(methods)) => {
                let options = std::iter::once(Method::OPTIONS.as_str());
                Listed::Fixed(joined(methods.iter().map(Method::as_str).chain(options)))
            }
        };
        let headers = match &config.allow_headers {
            AnyOr::Any => Listed::Mirror,
            AnyOr::List(listed) => {
                let always = MCP_REQUEST_HEADERS.iter().copied();
                let listed = listed.iter().chain(csrf).map(HeaderName::as_str);
                Listed::Fixed(joined(always.chain(listed)))
            }
        };
        let always = MCP_RESPONSE_HEADERS.iter().copied();
        let expose = match &config.expose_headers {
            // `*` covers everything on requests without credentials; the MCP headers after it
            // still reach pages on credentialed ones.
            AnyOr::Any => joined(std::iter::once("*").chain(always)),
            AnyOr::List(listed) => joined(always.chain(listed.iter().map(HeaderName::as_str))),
        };
        Self {
            origins: config.allow_origins.clone(),
            methods,
            headers,
            expose,
            credentials: config.allow_credentials,
            max_age: config.max_age.map(|age| HeaderValue::from(age.as_secs())),
            private_network: config.allow_private_network,
        }
    }

    /// The answer to a preflight: 200, and the grant when the origin is allowed (none
    /// otherwise, which the browser takes as a refusal).
    pub(super) fn preflight(&self, request: &HeaderMap) -> Response<Body> {
        let mut response = body::empty(StatusCode::OK);
        let headers = response.headers_mut();
        headers.append(
            VARY,
            HeaderValue::from_static(
                "access-control-request-method, access-control-request-headers",
            ),
        );
        if self.grant(request.get(ORIGIN)).is_none() {
            return response;
        }
        if let Some(methods) = self
            .methods
            .value(request.get(ACCESS_CONTROL_REQUEST_METHOD))
        {
            headers.insert(ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        if let Some(allowed) = self
            .headers
            .value(request.get(ACCESS_CONTROL_REQUEST_HEADERS))
        {
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allowed);
        }
        if let Some(age) = &self.max_age {
            headers.insert(ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        let private = request.get(REQUEST_PRIVATE_NETWORK);
        if self.private_network && private.is_some_and(|asked| asked == "true") {
            headers.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
        }
        response
    }

    /// Adds the grant for the request's `origin` to any response; `preflight` when it answers
    /// one (which exposes nothing).
    pub(super) fn decorate(
        &self,
        origin: Option<&HeaderValue>,
        preflight: bool,
        response: &mut Response<Body>,
    ) {
        let headers = response.headers_mut();
        headers.append(VARY, HeaderValue::from_static("origin"));
        let Some(granted) = self.grant(origin) else {
            return;
        };
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, granted);
        if self.credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if !preflight {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone());
        }
    }

    /// `Access-Control-Allow-Origin` for `origin`: `*` or the origin itself; `None` when not
    /// allowed.
    fn grant(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        match &self.origins {
            AnyOr::Any => Some(HeaderValue::from_static("*")),
            origins => allows(origins, origin.to_str().ok()?).then(|| origin.clone()),
        }
    }
}

impl Listed {
    fn value(&self, requested: Option<&HeaderValue>) -> Option<HeaderValue> {
        match self {
            Listed::Fixed(value) => Some(value.clone()),
            Listed::Mirror => requested.cloned(),
        }
    }
}

/// Whether `origin`, as a browser sent it, is one `origins` grants.
pub(crate) fn allows(origins: &AnyOr<OriginPattern>, origin: &str) -> bool {
    let AnyOr::List(patterns) = origins else {
        return true;
    };
    let origin = origin.to_ascii_lowercase();
    patterns.iter().any(|pattern| match pattern {
        OriginPattern::Exact(exact) => *exact == origin,
        OriginPattern::Glob(glob) => fast_glob::glob_match(glob, &origin),
    })
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method` (a plain
/// `OPTIONS` goes to its route).
pub(super) fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(ORIGIN)
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// `names` as one comma-separated value, each once.
fn joined<'a>(names: impl Iterator<Item = &'a str>) -> HeaderValue {
    let mut seen: Vec<&str> = Vec::new();
    for name in names {
        if !seen.iter().any(|known| known.eq_ignore_ascii_case(name)) {
            seen.push(name);
        }
    }
    HeaderValue::from_str(&seen.join(", ")).expect("BUG: header and method names are visible ASCII")
}
