//! Client requests, method by method: answered from the catalog or relayed to one downstream.
//!
//! Each request reads one catalog snapshot and routes within it, so a reload in between cannot
//! send it to the wrong server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::builtin::{self, EXECUTE, SEARCH};
use super::catalog::SEPARATOR;
use super::input::{InputRounds, Suspending};
use super::subscriptions::resource_not_found;
use super::{Asking, Bridge, Catalog, Gateway, Relay, Reply, RequestContext};
use crate::access::{Access, Caller, audit, policy};
use crate::config::{Auth, ToolsMode, Transport};
use crate::downstream::{CallOptions, Downstream};
use crate::mcp::jsonrpc::{
    self, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, RATE_LIMITED, RpcError,
};
use crate::mcp::param_headers;

type Outcome = Result<Reply, RpcError>;

/// How long `logging/setLevel` waits for each downstream.
const SET_LEVEL_TIMEOUT: Duration = Duration::from_secs(5);

/// One request being routed.
struct Call<'a> {
    id: Value,
    catalog: &'a Catalog,
    context: &'a RequestContext,
    // A std Mutex: routing notes the server on it, never across `.await`.
    audit: Mutex<Option<audit::Pending>>,
}

impl Call<'_> {
    /// Adds what routing learned to the audit record, if there is one.
    fn note(&self, learned: impl FnOnce(&mut audit::Call)) {
        let mut pending = self
            .audit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pending) = pending.as_mut() {
            learned(pending.call_mut());
        }
    }

    /// Records the call as `denied` when `hidden`: it names something the policy hides from
    /// the caller, who is answered as for a name that does not exist.
    fn deny_if(&self, hidden: bool) {
        if !hidden {
            return;
        }
        let mut pending = self
            .audit
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pending) = pending.as_mut() {
            pending.deny();
        }
    }

    fn note_server(&self, server: usize) {
        let name = self.catalog.members[server].downstream.name().to_owned();
        self.note(|call| call.server = Some(name));
    }
}

impl Gateway {
    /// The `initialize` result for a client that agreed on `version`.
    pub fn initialize_result(&self, version: &str) -> Value {
        json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": true},
                "prompts": {"listChanged": true},
                "resources": {"listChanged": true, "subscribe": self.offers_subscriptions()},
                "logging": {},
                "completions": {},
            },
            "serverInfo": {"name": "nexus", "version": env!("CARGO_PKG_VERSION")},
        })
    }

    /// Handles one client request (not `initialize`, which the session layer owns).
    pub async fn handle(&self, mut request: Value, context: &RequestContext) -> Reply {
        let id = request
            .get_mut("id")
            .map(Value::take)
            .unwrap_or(Value::Null);
        let params = request.get_mut("params").map(Value::take);
        let method = jsonrpc::method(&request).unwrap_or_default();
        let catalog = self.catalog();
        let pending = audit::audited(method)
            .zip(context.audit.as_ref())
            .map(|(method, trail)| {
                let call = audit::Call::of(method, params.as_ref());
                trail.begin(&context.caller, context.subscriber.as_ref(), call)
            });
        let call = Call {
            id: id.clone(),
            catalog: &catalog,
            context,
            audit: Mutex::new(pending),
        };
        let listing = || catalog.listing(&context.caller);
        let outcome = match method {
            "ping" => immediate(json!({})),
            "tools/list" => immediate(json!({"tools": self.listed_tools(&call)})),
            "tools/call" => self.call_tool(&call, params).await,
            "prompts/list" => immediate(json!({"prompts": listing().prompts})),
            "prompts/get" => get_prompt(&call, params).await,
            "resources/list" => immediate(json!({"resources": listing().resources})),
            "resources/templates/list" => {
                immediate(json!({"resourceTemplates": listing().templates}))
            }
            "resources/read" => read_resource(&call, params).await,
            "resources/subscribe" | "resources/unsubscribe" => {
                self.subscription(method, &call, params).await
            }
            "completion/complete" => complete(&call, params).await,
            "logging/setLevel" => self.set_level(&catalog, context, params).await,
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )),
        };
        let pending = call
            .audit
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let reply = match outcome {
            Ok(Reply::Immediate(mut response)) => {
                response["id"] = id;
                Reply::Immediate(response)
            }
            Ok(Reply::Relayed(mut relay)) => {
                if let Some(pending) = pending {
                    relay.audit(pending);
                }
                return Reply::Relayed(relay);
            }
            Ok(Reply::Challenged { challenge, .. }) => {
                let response = jsonrpc::error(id, INVALID_REQUEST, challenge.message());
                Reply::Challenged {
                    challenge,
                    response,
                }
            }
            Err(error) => Reply::Immediate(error.to_response(id)),
        };
        if let (Some(pending), Reply::Immediate(response) | Reply::Challenged { response, .. }) =
            (pending, &reply)
        {
            pending.answered(response);
        }
        reply
    }

    /// `resources/subscribe` and `resources/unsubscribe`, for the request's subscriber.
    async fn subscription(&self, method: &str, call: &Call<'_>, params: Option<Value>) -> Outcome {
        let Some(subscriber) = &call.context.subscriber else {
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {method} (needs a session)"),
            ));
        };
        let uri = string_param(params.as_ref().ok_or_else(|| missing("params"))?, "uri")?;
        // A resource the caller may not see is not found, as one that does not exist.
        let access = call
            .catalog
            .resource(&uri)
            .map(|(_, access)| access.as_ref());
        if access.is_some_and(|access| !policy::admits(access, &call.context.caller)) {
            return Err(resource_not_found(&uri));
        }
        if method == "resources/subscribe" {
            self.subscribe_resource(subscriber, &uri).await?;
        } else {
            self.unsubscribe_resource(subscriber, &uri).await?;
        }
        immediate(json!({}))
    }

    fn listed_tools(&self, call: &Call<'_>) -> Vec<Value> {
        match self.tools_mode() {
            ToolsMode::Search => builtin::definitions(),
            ToolsMode::Direct => call.catalog.listing(&call.context.caller).tools.clone(),
        }
    }

    async fn call_tool(&self, call: &Call<'_>, params: Option<Value>) -> Outcome {
        let mut params = params.ok_or_else(|| missing("params"))?;
        let name = string_param(&params, "name")?;
        if self.tools_mode() == ToolsMode::Search && (name == SEARCH || name == EXECUTE) {
            let arguments = params
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if name == SEARCH {
                let listing = call.catalog.listing(&call.context.caller);
                let result = builtin::search(&listing, &arguments)
                    .map_err(|message| RpcError::new(INVALID_PARAMS, message))?;
                return immediate(result);
            }
            // `execute {name, arguments}` is a plain call of that tool.
            params["name"] = arguments
                .get("name")
                .cloned()
                .ok_or_else(|| missing("arguments.name"))?;
            params["arguments"] = arguments
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!({}));
            call.note(|audited| {
                audited.via = Some(EXECUTE);
                audited.name = params["name"].as_str().map(str::to_owned);
                audited.arguments = Some(params["arguments"].clone());
            });
            return call_downstream_tool(call, params).await;
        }
        call_downstream_tool(call, params).await
    }
}

async fn call_downstream_tool(call: &Call<'_>, mut params: Value) -> Outcome {
    let name = string_param(&params, "name")?;
    let caller = &call.context.caller;
    let route = call.catalog.tool(&name, caller).cloned().ok_or_else(|| {
        call.deny_if(call.catalog.has_tool(&name));
        not_listed(call, "tool", &name)
    })?;
    call.note_server(route.server);
    if let Some(challenged) = scope_challenge(route.access.as_ref(), caller, "tool", &name) {
        return Ok(challenged);
    }
    admit(call, route.server, &route.name)?;
    params["name"] = Value::String(route.name);
    relay(call, route.server, "tools/call", params).await
}

async fn get_prompt(call: &Call<'_>, params: Option<Value>) -> Outcome {
    let mut params = params.ok_or_else(|| missing("params"))?;
    let name = string_param(&params, "name")?;
    let caller = &call.context.caller;
    let route = call.catalog.prompt(&name, caller).cloned().ok_or_else(|| {
        call.deny_if(call.catalog.has_prompt(&name));
        not_listed(call, "prompt", &name)
    })?;
    call.note_server(route.server);
    if let Some(challenged) = scope_challenge(route.access.as_ref(), caller, "prompt", &name) {
        return Ok(challenged);
    }
    params["name"] = Value::String(route.name);
    relay(call, route.server, "prompts/get", params).await
}

async fn read_resource(call: &Call<'_>, params: Option<Value>) -> Outcome {
    let params = params.ok_or_else(|| missing("params"))?;
    let uri = string_param(&params, "uri")?;
    let caller = &call.context.caller;
    let (server, access) = call
        .catalog
        .resource(&uri)
        .ok_or_else(|| resource_not_found(&uri))?;
    if !policy::admits(access.as_ref(), caller) {
        call.deny_if(true);
        return Err(resource_not_found(&uri));
    }
    call.note_server(*server);
    if let Some(challenged) = scope_challenge(access.as_ref(), caller, "resource", &uri) {
        return Ok(challenged);
    }
    relay(call, *server, "resources/read", params).await
}

/// A 403 scope challenge when `caller` lacks a scope the item needs.
fn scope_challenge(
    access: Option<&Arc<Access>>,
    caller: &Caller,
    kind: &str,
    name: &str,
) -> Option<Reply> {
    let challenge = access?.challenge(caller, &format!("the {kind} {name}"))?;
    Some(Reply::Challenged {
        challenge,
        response: Value::Null,
    })
}

async fn complete(call: &Call<'_>, params: Option<Value>) -> Outcome {
    let mut params = params.ok_or_else(|| missing("params"))?;
    let reference = params.get("ref").cloned().ok_or_else(|| missing("ref"))?;
    let caller = &call.context.caller;
    let server = match reference.get("type").and_then(Value::as_str) {
        Some("ref/prompt") => {
            let name = string_param(&reference, "name")?;
            let route = call
                .catalog
                .prompt(&name, caller)
                .cloned()
                .ok_or_else(|| not_listed(call, "prompt", &name))?;
            params["ref"]["name"] = Value::String(route.name);
            route.server
        }
        Some("ref/resource") => {
            let uri = string_param(&reference, "uri")?;
            let catalog = call.catalog;
            let (server, _) = catalog
                .template(&uri)
                .or_else(|| catalog.resource(&uri))
                .filter(|(_, access)| policy::admits(access.as_ref(), caller))
                .ok_or_else(|| unknown("resource template", &uri))?;
            *server
        }
        _ => {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "`ref.type` must be `ref/prompt` or `ref/resource`",
            ));
        }
    };
    relay(call, server, "completion/complete", params).await
}

impl Gateway {
    /// Records the client's level (its log messages are filtered by it) and passes the most
    /// verbose level any client set to every connected downstream that logs; answered once
    /// all replied.
    async fn set_level(
        &self,
        catalog: &Catalog,
        context: &RequestContext,
        params: Option<Value>,
    ) -> Outcome {
        let mut params = params.ok_or_else(|| missing("params"))?;
        let level = string_param(&params, "level")?;
        if let Some(client) = &context.subscriber
            && let Some(most_verbose) = self.log_levels.set(client, &level)
        {
            params["level"] = Value::from(most_verbose);
        }
        set_downstream_level(catalog, params).await
    }
}

async fn set_downstream_level(catalog: &Catalog, params: Value) -> Outcome {
    let logging = catalog
        .members
        .iter()
        .map(|member| &member.downstream)
        .filter(|d| d.lists().capabilities.get("logging").is_some());
    let requests = logging.map(|downstream| {
        let params = params.clone();
        async move {
            if let Ok((mut call, _)) = downstream
                .start("logging/setLevel", Some(params), &CallOptions::default())
                .await
            {
                let _ = call.response(SET_LEVEL_TIMEOUT).await;
            }
        }
    });
    futures_util::future::join_all(requests).await;
    immediate(json!({}))
}

/// Counts the call against the server's or tool's quota: refused, a JSON-RPC error naming the
/// quota's key and the seconds to wait (also in `data`, for programs).
fn admit(call: &Call<'_>, server: usize, tool: &str) -> Result<(), RpcError> {
    let Some(limiter) = &call.catalog.members[server].limiter else {
        return Ok(());
    };
    limiter
        .admit(tool, &call.context.caller)
        .map_err(|refusal| {
            let mut error = RpcError::new(RATE_LIMITED, refusal.message());
            error.data = Some(json!({
                "limit": refusal.limit,
                "retryAfterSeconds": refusal.retry_after(),
            }));
            error
        })
}

async fn relay(call: &Call<'_>, server: usize, method: &str, params: Value) -> Outcome {
    let downstream = &call.catalog.members[server].downstream;
    let config = downstream.config();
    // The client's token goes only to servers configured to receive it (DESIGN §3).
    let authorization = match &config.transport {
        Transport::Http(http) if matches!(http.auth, Some(Auth::Forward)) => {
            call.context.authorization.clone()
        }
        _ => None,
    };
    let options = CallOptions {
        authorization,
        log_level: call.context.log_level,
        client_capabilities: call.context.client_capabilities.clone(),
        param_headers: param_headers(downstream, method, &params),
        for_client: true,
    };
    let bridge = bridge(call.context, downstream, method, &params, &options);
    let (started, client_token) = downstream.start(method, Some(params), &options).await?;
    Ok(Reply::Relayed(Relay::new(
        started,
        call.id.clone(),
        client_token,
        method,
        config.call_timeout,
        bridge,
    )))
}

/// The `Mcp-Param-*` headers of a `tools/call`, from the schema the downstream listed for the
/// tool under its own name (`params.name` is already that name). Only a stateless downstream
/// is sent them, so no other call pays for the schema walk.
fn param_headers(downstream: &Downstream, method: &str, params: &Value) -> ::http::HeaderMap {
    if method != "tools/call" || !downstream.is_stateless() {
        return ::http::HeaderMap::new();
    }
    let name = params.get("name").and_then(Value::as_str);
    let lists = downstream.lists();
    let schema = lists
        .tools
        .iter()
        .find(|tool| tool.get("name").and_then(Value::as_str) == name)
        .and_then(|tool| tool.get("inputSchema"));
    let arguments = params.get("arguments").unwrap_or(&Value::Null);
    schema
        .map(|schema| param_headers::headers(schema, arguments))
        .unwrap_or_default()
}

/// How the relay of a call puts the downstream's questions to this client.
fn bridge(
    context: &RequestContext,
    downstream: &Arc<Downstream>,
    method: &str,
    params: &Value,
    options: &CallOptions,
) -> Bridge {
    match context.asking {
        Asking::Never => Bridge::Direct,
        // The rounds resend the call's params with the client's answers.
        Asking::Requests => Bridge::Rounds(Box::new(InputRounds::new(
            downstream.clone(),
            method,
            params.clone(),
            options.clone(),
        ))),
        Asking::InputRequired => Bridge::Suspending(Box::new(Suspending::new(
            context.client_capabilities.clone().unwrap_or_default(),
        ))),
    }
}

fn immediate(result: Value) -> Outcome {
    Ok(Reply::Immediate(jsonrpc::result(Value::Null, result)))
}

fn string_param(params: &Value, name: &str) -> Result<String, RpcError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| missing(name))
}

fn missing(name: &str) -> RpcError {
    RpcError::new(
        INVALID_PARAMS,
        format!("missing or invalid parameter `{name}`"),
    )
}

/// A name the catalog does not list for the caller: when it belongs to a server that is not
/// connected (its prefix, or the only server) and that the caller may use, the caller learns
/// why that server is missing (e.g. its TLS error) instead of "unknown".
fn not_listed(call: &Call<'_>, kind: &str, name: &str) -> RpcError {
    let catalog = call.catalog;
    let prefix = name.split_once(SEPARATOR).map(|(server, _)| server);
    let owner =
        catalog.members.iter().enumerate().find(|(_, member)| {
            prefix == Some(member.downstream.name()) || catalog.members.len() == 1
        });
    match owner {
        Some((server, member))
            if !member.downstream.is_connected()
                && catalog.server_visible(server, &call.context.caller) =>
        {
            member.downstream.not_connected()
        }
        _ => unknown(kind, name),
    }
}

fn unknown(kind: &str, name: &str) -> RpcError {
    RpcError::new(INVALID_PARAMS, format!("Unknown {kind}: {name}"))
}
