// A tiny stdio MCP server in Node.js for the package smoke test: proves a JIT runtime runs
// as a stdio downstream inside the unit's sandbox. Tools: `echo`, `whoami` (as echo_server.py).
const readline = require("readline");
const os = require("os");

// Exercise the JIT: a hot loop V8 compiles to machine code (needs writable+executable memory).
function hot(n) { let s = 0; for (let i = 0; i < n; i++) s = (s + i * 7) % 1000003; return s; }
hot(5e6);

function result(req) {
  const p = req.params || {};
  switch (req.method) {
    case "initialize":
      return { protocolVersion: p.protocolVersion || "2025-06-18", capabilities: { tools: {} },
               serverInfo: { name: "echo-node", version: "1" } };
    case "ping": return {};
    case "tools/list":
      return { tools: [
        { name: "echo", description: "Echoes text", inputSchema: { type: "object", properties: { text: { type: "string" } } } },
        { name: "whoami", description: "Runtime and user", inputSchema: { type: "object" } },
      ] };
    case "tools/call": {
      const a = p.arguments || {};
      const text = p.name === "echo" ? String(a.text || "")
        : `node user=${os.userInfo().username} jit=${hot(1e6)}`;
      return { content: [{ type: "text", text }] };
    }
  }
  return undefined;
}

readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const req = JSON.parse(line);
  if (req.id === undefined) return;
  const r = result(req);
  const reply = r === undefined
    ? { jsonrpc: "2.0", id: req.id, error: { code: -32601, message: "method not found" } }
    : { jsonrpc: "2.0", id: req.id, result: r };
  process.stdout.write(JSON.stringify(reply) + "\n");
});
