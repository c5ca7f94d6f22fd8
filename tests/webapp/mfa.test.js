// Two-factor authentication in the web client: a practitioner whose role must use it
// (auth.mfa-required-roles) is led from the login to the enrollment page, turns it on with a
// code from the authenticator (computed here, RFC 6238), sees the recovery codes once, and
// reaches the appointments; a later login asks for the second factor in plain words, refuses a
// wrong code, and takes a recovery code. axe-core on the pages; screenshots of them.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { Clinic } from "../signaling/lib/clinic.js";
import { PASSWORD, RELAXED_LIMITS, sleep } from "../signaling/lib/env.js";
import { AxeLog, SIZES, assertClean, launch, onFailure, openPage, shot } from "./lib/web.js";

let c;
let browser;
before(async () => {
  c = await Clinic.open({ name: "webapp-mfa", extraToml: `${RELAXED_LIMITS}\n[auth]\nmfa-required-roles = ["practitioner"]\n` });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await c?.control.stop();
});

function base32Decode(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const ch of text.replace(/=+$/, "")) bits += alphabet.indexOf(ch).toString(2).padStart(5, "0");
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret, unixSeconds = Math.floor(Date.now() / 1000)) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const digest = createHmac("sha1", base32Decode(secret)).update(counter).digest();
  const at = digest[19] & 0x0f;
  return String((digest.readUInt32BE(at) & 0x7fffffff) % 1000000).padStart(6, "0");
}

async function submitLogin(page, email, code) {
  await page.getByLabel("E-mail").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  if (code !== undefined) await page.getByTestId("login-otp").fill(code);
  await page.getByTestId("login-submit").click();
}

test("enrollment from the client, then a login with the second factor", async () => {
  const u = await c.practitioner("Dr. Mert Şahin");
  const page = await openPage(browser, "mfa", SIZES.phone);
  const a11y = new AxeLog();
  try {
    await page.goto(c.control.url("/"));
    await submitLogin(page, u.email);
    await page.getByTestId("mfa-view").waitFor();
    const uri = await page.getByTestId("mfa-uri").filter({ hasText: "otpauth://" }).textContent();
    const secret = new URL(uri).searchParams.get("secret");
    await shot(page, "phone-mfa-enroll");
    await a11y.check(page, "mfa enrollment");
    await page.getByTestId("mfa-code").fill("000000");
    await page.getByTestId("mfa-submit").click();
    await page.getByTestId("mfa-error").waitFor();
    while (Math.floor(Date.now() / 1000) % 30 >= 27) await sleep(200);
    await page.getByTestId("mfa-code").fill(totp(secret));
    await page.getByTestId("mfa-submit").click();
    await page.getByTestId("mfa-codes").locator("li").first().waitFor();
    const codes = await page.getByTestId("mfa-codes").locator("li").allTextContents();
    assert.equal(codes.length, 10);
    await shot(page, "phone-mfa-recovery-codes");
    await a11y.check(page, "mfa recovery codes");
    await page.getByTestId("mfa-continue").click();
    await page.getByTestId("appointments-view").waitFor();

    await page.getByTestId("logout").click();
    await page.getByTestId("login-view").waitFor();
    await submitLogin(page, u.email);
    await page.getByTestId("login-error").filter({ hasText: "authenticator" }).waitFor();
    await page.getByTestId("login-otp").waitFor();
    await shot(page, "phone-login-second-factor");
    await a11y.check(page, "login with second factor");
    await submitLogin(page, u.email, "123456");
    await page.getByTestId("login-error").filter({ hasText: "not accepted" }).waitFor();
    await submitLogin(page, u.email, codes[0].trim());
    await page.getByTestId("appointments-view").waitFor();
    assertClean(page);
    a11y.assertNone();
  } catch (e) {
    await onFailure("mfa", [page]);
    throw e;
  } finally {
    await page.context().close();
  }
});
