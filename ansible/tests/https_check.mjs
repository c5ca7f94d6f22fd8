// Used by tests/run: the deployment's end-to-end check over HTTPS through the proxy role's nginx,
// as a browser's code would do it: log in (enrolling the second factor when the inventory's
// `teletip_control_mfa_required_roles` requires it, as the shipped example does), fetch ICE credentials, open Socket.IO on /rtc (long
// polling upgraded to WebSocket, and WebSocket alone). Node verifies the certificate against
// NODE_EXTRA_CA_CERTS (the ACME test server's root), so a certificate from anywhere else fails.
//   node https_check.mjs https://localhost:PORT EMAIL   (password on standard input)
// Prints one JSON line with what it saw; exits non-zero on the first failure.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { createHmac } from "node:crypto";

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

/** RFC 6238 TOTP (HMAC-SHA-1, 6 digits, 30 s) of a base32 secret, as an authenticator app. */
function totp(secret, now = Date.now()) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(now / 30000)));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, "0");
}

const login = await call("POST", "/v1/auth/login", { body: { email, password } });
seen.hsts = login.res.headers.get("strict-transport-security");
const token = login.json.accessToken;
if (!token) throw new Error("login: no accessToken");
seen.login = "ok";
if (login.json.mfaEnrollmentRequired) {
  // The role requires a second factor: this session may only enroll it, then it is whole.
  const enroll = await call("POST", "/v1/auth/mfa/enroll", { token });
  const confirm = await call("POST", "/v1/auth/mfa/confirm", { token, body: { code: totp(enroll.json.secret) } });
  if ((confirm.json.recoveryCodes ?? []).length === 0) throw new Error("MFA confirm: no recovery codes");
  seen.mfa = "enrolled";
}
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
