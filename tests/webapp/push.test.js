// Web Push opt-in in the web client (control/webapp), in Debian's Chromium against the real
// teletip-control: the practitioner's "Notify me in this browser" setting, the service worker
// (/sw.js, scope /, under the page's strict CSP) and what it shows for a push. This machine has
// no route to a browser vendor's push service, so the browser's own subscribe fails: the page
// must say so plainly. A push is delivered to the service worker through the DevTools protocol
// (ServiceWorker.deliverPushMessage), as the push service would, and the notification it shows
// is read back with registration.getNotifications(). With Web Push off on the server (its VAPID
// key answers 404) the setting is not shown at all.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, RELAXED_LIMITS, tempDir } from "../signaling/lib/env.js";
import { AxeLog, SIZES, assertClean, launch, logIn, onFailure, openPage, openPersistentPage, shot, until } from "./lib/web.js";

let on;
let off;
let browser;
before(async () => {
  on = await Control.start({
    name: "webapp-push-on",
    dir: tempDir("teletip-webapp-push-"),
    extraToml: `${RELAXED_LIMITS}\n[notifications]\nweb-push = true\nvapid-subject = "mailto:ops@teletip.test"\n`,
  });
  on.createAdmin();
  off = await Control.start({ name: "webapp-push-off", dir: tempDir("teletip-webapp-nopush-") });
  off.createAdmin();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await on?.stop();
  await off?.stop();
});

test("web push on: the service worker shows a generic notification for a push; the offline subscribe says so plainly", async () => {
  const c = await Clinic.open({ control: on });
  const doc = await c.practitioner("Dr. Işıl Koç");
  // A profile on disk: in a private context Chromium refuses the Push API outright, which
  // would hide the offline case this test is about.
  const page = await openPersistentPage("practitioner-push", SIZES.desktop, { permissions: ["notifications"] });
  const a11y = new AxeLog();
  try {
    await logIn(page, on, doc);
    const setting = page.getByTestId("push-setting");
    await setting.waitFor();
    assert.equal(await setting.getAttribute("data-state"), "off");
    assert.match(await setting.textContent(), /Notify me in this browser/);
    await a11y.check(page, "appointments with the push setting");

    // The service worker is registered with scope / from /sw.js.
    const reg = await until("the service worker", async () => {
      const r = await page.evaluate(async () => {
        const reg = await navigator.serviceWorker.getRegistration("/");
        return reg && reg.active ? { scope: reg.scope, script: reg.active.scriptURL } : null;
      });
      return { ok: !!r, value: r };
    });
    assert.equal(reg.scope, on.url("/"));
    assert.equal(reg.script, on.url("/sw.js"));

    // Turning it on: the browser cannot reach its push service here (its subscribe never
    // settles; the page gives up after 15 s): a plain message, the setting stays off, and
    // nothing was registered on the server.
    await page.getByTestId("push-toggle").click();
    const problem = page.getByTestId("push-problem");
    await problem.waitFor({ timeout: 60000 });
    assert.equal(await problem.getAttribute("data-problem"), "unreachable", await problem.textContent());
    assert.match(await problem.textContent(), /could not reach its push service/);
    await until("the setting to settle", async () => {
      const s = await setting.getAttribute("data-state");
      return { ok: s === "off", value: s };
    });
    assert.equal(await page.getByTestId("push-toggle").isChecked(), false);
    const subs = await c.api.must("GET", "/v1/me/push-subscriptions", doc.token);
    assert.deepEqual(subs, [], "no subscription registered");
    await shot(page, "push-unreachable");
    await a11y.check(page, "push unreachable");

    // A push, as the push service would deliver it: the notification names the kind of event only.
    const cdp = await page.context().newCDPSession(page);
    const registrations = [];
    cdp.on("ServiceWorker.workerRegistrationUpdated", (e) => registrations.push(...e.registrations));
    await cdp.send("ServiceWorker.enable");
    const registrationId = await until("the registration id", async () => {
      const r = registrations.find((x) => x.scopeURL === on.url("/") && !x.isDeleted);
      return { ok: !!r, value: r && r.registrationId };
    });
    const pushes = [
      { type: "lobby.patient-waiting", id: "e1", appointmentId: "a1", link: on.url("/appointments"), title: "A patient is waiting" },
      { type: "appointment.cancelled", id: "e2", appointmentId: "a2", link: on.url("/appointments"), title: "An appointment was cancelled" },
    ];
    // Delivered again until shown (a push that arrives while the worker is still starting can
    // be dropped by DevTools; the tag keeps a repeat from adding a second notification).
    let delivered = 0;
    const shown = await until("the notifications", async () => {
      if (delivered++ % 20 === 0) {
        for (const p of pushes) {
          const { title: _t, ...payload } = p;
          await cdp.send("ServiceWorker.deliverPushMessage", { origin: on.url(""), registrationId, data: JSON.stringify(payload) });
        }
      }
      const list = await page.evaluate(async () => {
        const reg = await navigator.serviceWorker.ready;
        return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag, data: n.data }));
      });
      return { ok: list.length === pushes.length, value: list };
    });
    for (const p of pushes) {
      const n = shown.find((x) => x.tag === p.id);
      assert.ok(n, `a notification for ${p.type}: ${JSON.stringify(shown)}`);
      assert.equal(n.title, p.title);
      assert.equal(n.body, "Open teletip to see it.");
      assert.equal(n.data.link, p.link, "a click opens the push's link");
    }
    await cdp.detach();
    assertClean(page);
    a11y.assertNone();
  } catch (e) {
    await onFailure("push", [page]);
    throw e;
  } finally {
    await page.context().close();
  }
});

test("web push off: the setting is not shown", async () => {
  const c = await Clinic.open({ control: off });
  const doc = await c.practitioner("Dr. Kaan Ateş");
  const page = await openPage(browser, "practitioner-nopush", SIZES.desktop, { permissions: ["notifications"] });
  try {
    await logIn(page, off, doc);
    // The setting asks the server first; wait for that answer (404) before looking.
    await until("the VAPID key's answer", async () => {
      const r = await page.evaluate(() => performance.getEntriesByType("resource").some((e) => e.name.endsWith("/v1/push/vapid-public-key")));
      return { ok: r, value: r };
    });
    await page.waitForTimeout(500);
    assert.equal(await page.getByTestId("push-setting").count(), 0);
    const status = await page.evaluate(async () => (await fetch("/v1/push/vapid-public-key")).status);
    assert.equal(status, 404);
    assertClean(page);
  } catch (e) {
    await onFailure("nopush", [page]);
    throw e;
  } finally {
    await page.context().close();
  }
});
