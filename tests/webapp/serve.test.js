// teletip-control serves the built client (control/webapp/dist) as it is: every file byte for
// byte under the strict CSP, hashed assets cached for good and the page revalidated, the
// client's routes answering its page while other unknown paths stay the API's JSON 404, and no
// inline script or style in the page (the CSP would refuse them).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { Control, ROOT, RELAXED_LIMITS, tempDir } from "../signaling/lib/env.js";

const DIST = join(ROOT, "control", "webapp", "dist");
let control;
before(async () => {
  control = await Control.start({ name: "webapp-serve", dir: tempDir("teletip-webapp-serve-"), extraToml: RELAXED_LIMITS });
});
after(async () => {
  await control?.stop();
});

function files(dir) {
  return readdirSync(dir).flatMap((f) => (statSync(join(dir, f)).isDirectory() ? files(join(dir, f)) : [join(dir, f)]));
}

const DIRECTIVES = [
  "default-src 'self'",
  "connect-src 'self' ws: wss:",
  "media-src 'self' blob: mediastream:",
  "img-src 'self' data:",
  "style-src 'self'",
  "script-src 'self'",
  "frame-ancestors 'none'",
];

test("every file of control/webapp/dist is served as built, under the strict CSP", async () => {
  const all = files(DIST);
  assert.ok(all.some((f) => f.endsWith(".js")) && all.some((f) => f.endsWith(".css")), "a script and a style sheet");
  for (const f of all) {
    const rel = relative(DIST, f);
    const path = rel === "index.html" ? "/" : `/${rel}`;
    const res = await fetch(control.url(path));
    assert.equal(res.status, 200, path);
    const served = Buffer.from(await res.arrayBuffer());
    assert.ok(served.equals(readFileSync(f)), `${path} differs from dist/${rel}: the binary embeds an older bundle (cargo build -p teletip-control)`);
    const csp = (res.headers.get("content-security-policy") || "").split(";").map((d) => d.trim());
    for (const d of DIRECTIVES) assert.ok(csp.includes(d), `${path}: CSP lacks ${d}`);
    assert.equal(res.headers.get("cache-control"), path.startsWith("/assets/") ? "public, max-age=31536000, immutable" : "no-cache", path);
  }
});

test("the client's routes answer its page; other unknown paths stay JSON 404", async () => {
  const page = readFileSync(join(DIST, "index.html"));
  for (const path of ["/appointments", "/privacy", "/mfa", "/check/abc", "/room/abc", "/ended/abc"]) {
    const res = await fetch(control.url(path));
    assert.equal(res.status, 200, path);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(page), path);
  }
  for (const path of ["/nowhere", "/v1/nowhere", "/room/a/b", "/assets/missing.js"]) {
    const res = await fetch(control.url(path));
    assert.equal(res.status, 404, path);
    assert.match(res.headers.get("content-type"), /^application\/problem\+json/, path);
  }
});

test("the page has no inline script, inline style or foreign origin", () => {
  const html = readFileSync(join(DIST, "index.html"), "utf8");
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    assert.match(m[1], /\bsrc="\/[^"]+"/, `a script without a same-origin src: ${m[0]}`);
    assert.equal(m[2].trim(), "", "inline script code");
  }
  assert.doesNotMatch(html, /<style\b/i, "a <style> block");
  assert.doesNotMatch(html, /\sstyle\s*=/i, "an inline style attribute");
  assert.doesNotMatch(html, /\son[a-z]+\s*=/i, "an inline event handler");
  assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//i, "a resource from another origin");
});
