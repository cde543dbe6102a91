//! Client requests, method by method: answered from the catalog or relayed to one downstream.

use serde_json::{Value, json};

use super::builtin::{self, EXECUTE, SEARCH};
use super::{Gateway, Relay, Reply, RequestContext};
use crate::config::ToolsMode;
use crate::mcp::jsonrpc::{
    self, INVALID_PARAMS, METHOD_NOT_FOUND, RATE_LIMITED, RESOURCE_NOT_FOUND, RpcError,
};

type Outcome = Result<Reply, RpcError>;

impl Gateway {
    /// The `initialize` result for a client that agreed on `version`.
    pub fn initialize_result(&self, version: &str) -> Value {
        json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": {"listChanged": true},
                "prompts": {"listChanged": true},
                "resources": {"listChanged": true},
                "logging": {},
                "completions": {},
            },
            "serverInfo": {"name": "nexus", "version": env!("CARGO_PKG_VERSION")},
        })
    }

    /// Handles one client request (not `initialize`, which the session layer owns).
    pub async fn handle(&self, request: Value, context: &RequestContext) -> Reply {
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        let method = jsonrpc::method(&request).unwrap_or_default().to_owned();
        let params = request.get("params").cloned();
        let outcome = match method.as_str() {
            "ping" => immediate(json!({})),
            "tools/list" => immediate(json!({"tools": self.listed_tools()})),
            "tools/call" => self.call_tool(id.clone(), params, context).await,
            "prompts/list" => immediate(json!({"prompts": self.catalog().prompts})),
            "prompts/get" => self.get_prompt(id.clone(), params, context).await,
            "resources/list" => immediate(json!({"resources": self.catalog().resources})),
            "resources/templates/list" => {
                immediate(json!({"resourceTemplates": self.catalog().templates}))
            }
            "resources/read" => self.read_resource(id.clone(), params, context).await,
            "completion/complete" => self.complete(id.clone(), params, context).await,
            "logging/setLevel" => self.set_level(params).await,
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            )),
        };
        outcome
            .unwrap_or_else(|error| Reply::Immediate(error.to_response(id.clone())))
            .with_id(id)
    }

    fn listed_tools(&self) -> Vec<Value> {
        match self.tools_mode {
            ToolsMode::Search => builtin::definitions(),
            ToolsMode::Direct => self.catalog().tools.clone(),
        }
    }

    async fn call_tool(
        &self,
        id: Value,
        params: Option<Value>,
        context: &RequestContext,
    ) -> Outcome {
        let mut params = params.ok_or_else(|| missing("params"))?;
        let name = string_param(&params, "name")?;
        if self.tools_mode == ToolsMode::Search && (name == SEARCH || name == EXECUTE) {
            let arguments = params
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!({}));
            if name == SEARCH {
                let result = builtin::search(&self.catalog(), &arguments)
                    .map_err(|message| RpcError::new(INVALID_PARAMS, message))?;
                return immediate(result);
            }
            // `execute {name, arguments}` becomes a plain call of that tool.
            params["name"] = arguments
                .get("name")
                .cloned()
                .ok_or_else(|| missing("arguments.name"))?;
            params["arguments"] = arguments
                .get("arguments")
                .cloned()
                .unwrap_or_else(|| json!({}));
            return Box::pin(self.call_tool(id, Some(params), context)).await;
        }
        let route = self
            .catalog()
            .tool(&name)
            .cloned()
            .ok_or_else(|| unknown("tool", &name))?;
        self.admit(route.server, &route.name)?;
        params["name"] = Value::String(route.name);
        self.relay(route.server, id, "tools/call", params, context)
            .await
    }

    async fn get_prompt(
        &self,
        id: Value,
        params: Option<Value>,
        context: &RequestContext,
    ) -> Outcome {
        let mut params = params.ok_or_else(|| missing("params"))?;
        let name = string_param(&params, "name")?;
        let route = self
            .catalog()
            .prompt(&name)
            .cloned()
            .ok_or_else(|| unknown("prompt", &name))?;
        params["name"] = Value::String(route.name);
        self.relay(route.server, id, "prompts/get", params, context)
            .await
    }

    async fn read_resource(
        &self,
        id: Value,
        params: Option<Value>,
        context: &RequestContext,
    ) -> Outcome {
        let params = params.ok_or_else(|| missing("params"))?;
        let uri = string_param(&params, "uri")?;
        let server = self.catalog().resource(&uri).ok_or_else(|| {
            let mut error = RpcError::new(RESOURCE_NOT_FOUND, format!("Resource not found: {uri}"));
            error.data = Some(json!({"uri": uri}));
            error
        })?;
        self.relay(server, id, "resources/read", params, context)
            .await
    }

    async fn complete(
        &self,
        id: Value,
        params: Option<Value>,
        context: &RequestContext,
    ) -> Outcome {
        let mut params = params.ok_or_else(|| missing("params"))?;
        let reference = params.get("ref").cloned().ok_or_else(|| missing("ref"))?;
        let server = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = string_param(&reference, "name")?;
                let route = self
                    .catalog()
                    .prompt(&name)
                    .cloned()
                    .ok_or_else(|| unknown("prompt", &name))?;
                params["ref"]["name"] = Value::String(route.name);
                route.server
            }
            Some("ref/resource") => {
                let uri = string_param(&reference, "uri")?;
                let catalog = self.catalog();
                catalog
                    .template(&uri)
                    .or_else(|| catalog.resource(&uri))
                    .ok_or_else(|| unknown("resource template", &uri))?
            }
            _ => {
                return Err(RpcError::new(
                    INVALID_PARAMS,
                    "`ref.type` must be `ref/prompt` or `ref/resource`",
                ));
            }
        };
        self.relay(server, id, "completion/complete", params, context)
            .await
    }

    /// Passes the level to every connected downstream that logs; answered once all replied.
    async fn set_level(&self, params: Option<Value>) -> Outcome {
        let params = params.ok_or_else(|| missing("params"))?;
        string_param(&params, "level")?;
        let timeout = std::time::Duration::from_secs(5);
        let requests = self
            .downstreams
            .iter()
            .filter(|d| d.lists().capabilities.get("logging").is_some())
            .map(|downstream| {
                let params = params.clone();
                async move {
                    if let Ok((mut call, _)) = downstream
                        .start("logging/setLevel", Some(params), None)
                        .await
                    {
                        let _ = call.response(timeout).await;
                    }
                }
            });
        futures_util::future::join_all(requests).await;
        immediate(json!({}))
    }

    fn admit(&self, server: usize, tool: &str) -> Result<(), RpcError> {
        let Some(limiter) = &self.limiters[server] else {
            return Ok(());
        };
        limiter.admit(Some(tool)).map_err(|(bucket, wait)| {
            RpcError::new(
                RATE_LIMITED,
                format!(
                    "rate limit of server '{}' reached ({}); retry in {} s",
                    self.downstreams[server].name(),
                    bucket.describe(),
                    wait.as_secs().max(1)
                ),
            )
        })
    }

    async fn relay(
        &self,
        server: usize,
        id: Value,
        method: &str,
        params: Value,
        context: &RequestContext,
    ) -> Outcome {
        let downstream = &self.downstreams[server];
        let authorization = match &downstream.config().transport {
            crate::config::Transport::Http(http)
                if matches!(http.auth, Some(crate::config::Auth::Forward)) =>
            {
                context.authorization.as_ref()
            }
            _ => None,
        };
        let (call, client_token) = downstream
            .start(method, Some(params), authorization)
            .await?;
        Ok(Reply::Relayed(Relay::new(
            call,
            id,
            client_token,
            method,
            downstream.config().call_timeout,
        )))
    }
}

impl Reply {
    fn with_id(self, id: Value) -> Self {
        match self {
            Reply::Immediate(mut message) if message.get("result").is_some() => {
                message["id"] = id;
                Reply::Immediate(message)
            }
            other => other,
        }
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

fn unknown(kind: &str, name: &str) -> RpcError {
    RpcError::new(INVALID_PARAMS, format!("Unknown {kind}: {name}"))
}
