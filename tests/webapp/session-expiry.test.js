// An expired session in the web client (control/webapp), driven in Debian's Chromium against
// the real teletip-control: back to the login page once with a plain message, no retry loop,
// and logging in again works. A file of its own (it was in bad-input.test.js): the session must
// live out its minute, and the runner runs files side by side.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, RELAXED_LIMITS, PASSWORD, sleep, tempDir } from "../signaling/lib/env.js";
import { QUIET_MS, SIZES, assertClean, launch, logIn, onFailure, openPage, recordApi, shot } from "./lib/web.js";

let browser;
before(async () => {
  browser = await launch();
});
after(async () => {
  await browser?.close();
});

test("an expired session: back to the login page once, with a plain message, and logging in again works", async () => {
  // A control plane of its own whose sessions end after 60 s (the shortest it accepts), before
  // the first refresh (at 67.5 s: 22.5 s before the 90-s access token expires): the refresh is
  // refused and the session is over.
  const dir = tempDir("teletip-webapp-expiry-");
  const short = await Control.start({ name: "webapp-expiry", dir, extraToml: `${RELAXED_LIMITS}\n[auth]\naccess-ttl = 90\nsession-ttl = 60\n` });
  short.createAdmin();
  const sc = await Clinic.open({ control: short });
  const { patient } = await sc.pair({ practitioner: "Dr. Oya Tan", patient: "Ece Demir" });
  const pat = await openPage(browser, "patient-expired", SIZES.desktop);
  const api = recordApi(pat);
  try {
    await logIn(pat, short, patient);
    const status = pat.getByTestId("status");
    await pat.getByTestId("login-view").waitFor({ timeout: 120000 });
    assert.match(await status.textContent(), /Your session has ended\. Please log in again\./);
    await shot(pat, "bad-expired");
    const refreshes = api.filter((r) => r === "POST /v1/auth/refresh").length;
    assert.ok(refreshes >= 1 && refreshes <= 2, `${refreshes} refreshes: ${JSON.stringify(api)}`);
    // No loop: nothing more is asked of the server while the login page waits.
    const n = api.length;
    await sleep(QUIET_MS);
    assert.deepEqual(api.slice(n), [], "requests after the session ended");
    // The way forward: logging in again.
    await pat.getByLabel("E-mail").fill(patient.email);
    await pat.getByLabel("Password").fill(PASSWORD);
    await pat.getByRole("button", { name: "Log in" }).click();
    await pat.getByTestId("appointments-view").waitFor();
    assertClean(pat);
  } catch (e) {
    await onFailure("bad-expired", [pat]);
    throw e;
  } finally {
    await pat.context().close();
    await short.stop();
  }
});
