// The web client's static files: the vendored socket.io-client is the pinned npm package's
// file, byte for byte; the pages obey the CSP (no inline script or style, nothing from
// elsewhere); every element id app.js looks up exists in index.html.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { ROOT, HERE } from "./lib/env.js";

const WEB = join(ROOT, "control", "web");
const read = (p) => readFileSync(join(WEB, p), "utf8");

test("vendored socket.io.min.js is byte-identical to the pinned socket.io-client", () => {
  const pinned = JSON.parse(readFileSync(join(HERE, "..", "package.json"), "utf8")).devDependencies["socket.io-client"];
  assert.match(pinned, /^\d+\.\d+\.\d+$/, "socket.io-client is pinned to an exact version");
  const require = createRequire(join(HERE, "..", "package.json"));
  const pkgDir = join(require.resolve("socket.io-client/package.json"), "..");
  const installed = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")).version;
  assert.equal(installed, pinned, "npm ci installed the pinned version");
  const upstream = readFileSync(join(pkgDir, "dist", "socket.io.min.js"));
  const vendored = readFileSync(join(WEB, "vendor", "socket.io.min.js"));
  assert.ok(vendored.equals(upstream), "control/web/vendor/socket.io.min.js differs from node_modules/socket.io-client/dist/socket.io.min.js");
  assert.match(read("vendor/README.md"), new RegExp(`\\*\\*${pinned.replaceAll(".", "\\.")}\\*\\*`), "vendor/README.md names the version");
  assert.match(read("vendor/README.md"), /MIT/);
});

test("index.html has no inline script, inline style or foreign origin (strict CSP)", () => {
  const html = read("index.html");
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    assert.match(m[1], /\bsrc="\/[^"]+"/, `a script without a same-origin src: ${m[0]}`);
    assert.equal(m[2].trim(), "", "inline script code");
  }
  assert.doesNotMatch(html, /<style\b/i, "a <style> block");
  assert.doesNotMatch(html, /\sstyle\s*=/i, "an inline style attribute");
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i, "an inline event handler");
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//i, "a resource from another origin");
  for (const path of ["/app.js", "/app.css", "/vendor/socket.io.min.js"]) assert.ok(html.includes(`"${path}"`), `index.html loads ${path}`);
  assert.match(html, /aria-live="polite"/, "a live region for status");
  assert.match(html, /<meta name="viewport"[^>]*width=device-width/);
});

test("every id app.js looks up exists in index.html, and app.js has no eval or inline styles", () => {
  const html = read("index.html");
  const js = read("app.js");
  const ids = new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]));
  const used = new Set([...js.matchAll(/\$\("([^"]+)"\)/g)].map((m) => m[1]));
  assert.ok(used.size > 20);
  for (const id of used) assert.ok(ids.has(id), `app.js uses #${id}, missing in index.html`);
  assert.doesNotMatch(js, /\beval\(|new Function\(|\.style\.|setAttribute\("style"|innerHTML/, "CSP-unsafe or injection-prone code");
  // Every label points at an existing control.
  for (const m of html.matchAll(/<label for="([^"]+)"/g)) assert.ok(ids.has(m[1]), `label for #${m[1]}`);
});

test("app.css has no remote imports", () => {
  const css = read("app.css");
  assert.doesNotMatch(css, /@import|url\((["']?)(https?:)?\/\//i);
  assert.match(css, /:focus-visible/, "focus stays visible");
  assert.match(css, /@media \(max-width/, "a small-screen layout");
});
