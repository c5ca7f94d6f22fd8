// Used by tests/run: the deployment's end-to-end check over HTTPS through the proxy role's nginx,
// as a browser's code would do it: log in, fetch ICE credentials, open Socket.IO on /rtc (long
// polling upgraded to WebSocket, and WebSocket alone). Node verifies the certificate against
// NODE_EXTRA_CA_CERTS (the ACME test server's root), so a certificate from anywhere else fails.
//   node https_check.mjs https://localhost:PORT EMAIL   (password on standard input)
// Prints one JSON line with what it saw; exits non-zero on the first failure.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../../tests/signaling/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [base, email] = process.argv.slice(2);
const password = readFileSync(0, "utf8").split("\n")[0];
const seen = {};

async function call(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return { res, json: text ? JSON.parse(text) : null };
}

function openSocket(token, transports) {
  return new Promise((resolve, reject) => {
    const socket = io(`${base}/rtc`, { auth: { token }, transports, reconnection: false, forceNew: true, timeout: 10000 });
    const timer = setTimeout(() => { socket.close(); reject(new Error(`socket.io (${transports}) did not reach websocket in 15 s`)); }, 15000);
    const done = () => {
      clearTimeout(timer);
      const transport = socket.io.engine.transport.name;
      socket.close();
      resolve(transport);
    };
    socket.on("connect_error", (err) => { clearTimeout(timer); socket.close(); reject(new Error(`socket.io (${transports}): ${err.message}`)); });
    socket.on("connect", () => {
      if (socket.io.engine.transport.name === "websocket") done();
      else socket.io.engine.once("upgrade", done);
    });
  });
}

const login = await call("POST", "/v1/auth/login", { body: { email, password } });
seen.hsts = login.res.headers.get("strict-transport-security");
const token = login.json.accessToken;
if (!token) throw new Error("login: no accessToken");
seen.login = "ok";
// Several requests, so that both instances behind nginx's round robin answer some.
seen.ice = [];
for (let i = 0; i < 6; i++) {
  const ice = await call("POST", "/v1/ice/credentials", { token });
  const servers = ice.json.iceServers ?? [];
  if (servers.length === 0) throw new Error(`ICE credentials without iceServers: ${JSON.stringify(ice.json)}`);
  seen.ice.push(servers.flatMap((s) => [].concat(s.urls)).length);
}
seen.socketPollingThenWebsocket = await openSocket(token, ["polling", "websocket"]);
seen.socketWebsocket = await openSocket(token, ["websocket"]);
console.log(JSON.stringify(seen));
