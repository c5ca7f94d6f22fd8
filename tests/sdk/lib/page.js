// A page for Chromium that loads the SDK as browsers would: ES modules from control/sdk/dist,
// socket.io-client's ES build through an import map, served from http://127.0.0.1:PORT (a
// secure context, so getUserMedia exists). The page calls the control plane cross-origin,
// which the test's control instance allows with `cors-allowed-origins`.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { join, normalize } from "node:path";
import { ROOT } from "../../signaling/lib/env.js";

const SDK_DIST = join(ROOT, "control", "sdk", "dist");
const SOCKET_IO_ESM = join(ROOT, "control", "sdk", "node_modules", "socket.io-client", "dist", "socket.io.esm.min.js");

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>teletip SDK in Chromium</title>
<script type="importmap">{"imports": {"socket.io-client": "/vendor/socket.io.esm.min.js"}}</script>
<script type="module">
  import * as sdk from "/sdk/index.js";
  window.sdk = sdk;
  window.sdkReady = true;
</script>
`;

const TYPES = { ".js": "text/javascript", ".map": "application/json", ".html": "text/html" };

/** Serves the page; resolves with its origin and a close function. */
export function servePage() {
  const server = createServer(async (req, res) => {
    try {
      const path = new URL(req.url, "http://x").pathname;
      if (path === "/") return send(res, 200, PAGE, ".html");
      if (path === "/vendor/socket.io.esm.min.js") return send(res, 200, await readFile(SOCKET_IO_ESM), ".js");
      if (path.startsWith("/sdk/")) {
        const file = normalize(join(SDK_DIST, path.slice("/sdk/".length)));
        if (!file.startsWith(SDK_DIST)) return send(res, 404, "not found", ".html");
        return send(res, 200, await readFile(file), file.slice(file.lastIndexOf(".")));
      }
      send(res, 404, "not found", ".html");
    } catch {
      send(res, 404, "not found", ".html");
    }
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const origin = `http://127.0.0.1:${server.address().port}`;
      resolve({ origin, close: () => new Promise((r) => server.close(r)) });
    });
  });
}

function send(res, status, body, ext) {
  res.writeHead(status, { "content-type": TYPES[ext] || "application/octet-stream", "cache-control": "no-store" });
  res.end(body);
}
