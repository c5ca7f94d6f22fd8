// The web client in Turkish: a patient whose browser runs in another time zone
// (America/New_York) switches the language on the login page and goes through the main pages
// (login, appointments, device check, waiting room). Every page's heading and buttons are the
// Turkish ones, the document's lang is "tr", the choice survives a reload, and appointment times
// are the browser's local clock (not the practitioner's Istanbul time, not UTC) with the time
// zone named.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, Relay, RELAXED_LIMITS, PASSWORD, freeUdpPort, tempDir } from "../signaling/lib/env.js";
import { AxeLog, SIZES, assertClean, launch, onFailure, openPage, shot } from "./lib/web.js";

const TZ = "America/New_York";

let control;
let relay;
let browser;
let c;
before(async () => {
  const dir = tempDir("teletip-webapp-tr-");
  const relayPort = await freeUdpPort();
  control = await Control.start({ name: "webapp-tr", dir, extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\n` });
  control.createAdmin();
  relay = await Relay.start({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  c = await Clinic.open({ control });
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  await control?.stop();
});

/** "14:05" in the time zone `tz`, as a clock reads it (Node's own Intl, not the page's). */
function hhmm(iso, tz) {
  const parts = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23", timeZone: tz }).formatToParts(new Date(iso));
  return `${parts.find((p) => p.type === "hour").value}:${parts.find((p) => p.type === "minute").value}`;
}

test("Turkish: the main pages' texts, and local times with the time zone", async () => {
  const { patient, appointment } = await c.pair({ practitioner: "Dr. Elif Kaya", patient: "Ayşe Yılmaz" });
  const page = await openPage(browser, "patient-tr", SIZES.phone, { timezoneId: TZ });
  const a11y = new AxeLog();
  try {
    await page.goto(control.url("/"));
    await page.getByTestId("login-view").waitFor();
    assert.equal(await page.locator("h1").textContent(), "Log in", "English first (an en-GB browser)");
    await page.getByTestId("language").selectOption("tr");
    await page.getByRole("heading", { name: "Giriş yap" }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.lang), "tr");
    assert.match(await page.title(), /^Giriş yap – teletip$/);
    await shot(page, "tr-login");
    await a11y.check(page, "login (tr)");

    // The choice is kept across a reload (a reload also ends the in-memory login).
    await page.reload();
    await page.getByRole("heading", { name: "Giriş yap" }).waitFor();
    await page.getByLabel("E-posta").fill(patient.email);
    await page.getByLabel("Parola").fill(PASSWORD);
    await page.getByRole("button", { name: "Giriş yap" }).click();
    await page.getByTestId("appointments-view").waitFor();
    assert.equal(await page.locator("#appointments-title").textContent(), "Randevularım");
    assert.equal(await page.locator("#group-today").textContent(), "Bugün");
    assert.equal(await page.getByTestId("logout").textContent(), "Çıkış yap");
    const row = page.locator(`[data-appointment-id="${appointment.id}"]`);
    const open = row.getByTestId("appointment-open");
    assert.equal(await open.textContent(), "Görüşmeye katıl");
    // Local times: the start and end in New York's clock, and the zone named (tr-TR names it
    // "GMT-5" or "GMT-4"); Istanbul's or UTC's clock would differ by hours.
    const time = await row.locator(".appt-time").textContent();
    const from = hhmm(appointment.start, TZ);
    const to = hhmm(appointment.end, TZ);
    assert.ok(time.includes(`${from}–${to}`), `"${time}" shows ${from}–${to} (${TZ})`);
    assert.match(time, /GMT[-−]\d/, `"${time}" names the time zone`);
    assert.notEqual(hhmm(appointment.start, "Europe/Istanbul"), from, "the zones differ, so the check can fail");
    await shot(page, "tr-appointments");
    await a11y.check(page, "appointments (tr)");

    // The device check and the waiting room.
    await open.click();
    await page.getByTestId("check-view").waitFor();
    assert.equal(await page.locator("#check-title").textContent(), "Kameranızı ve mikrofonunuzu kontrol edin");
    assert.equal(await page.getByTestId("join").textContent(), "Şimdi katıl");
    assert.equal(await page.getByTestId("check-again").textContent(), "Yeniden dene");
    await shot(page, "tr-check");
    await a11y.check(page, "device check (tr)");
    await page.getByTestId("join").click();
    await page.getByRole("heading", { name: "Bekleme odasındasınız" }).waitFor();
    assert.match(await page.title(), /Görüşme – teletip/);
    // The practitioner's live status, in Turkish: not connected.
    await page.locator('[data-testid="doctor-status"][data-status="offline"]').waitFor();
    assert.match(await page.getByTestId("doctor-status").textContent(), /Hekiminiz henüz bağlı değil/);
    await shot(page, "tr-waiting");
    await a11y.check(page, "waiting room (tr)");
    assertClean(page);
    a11y.assertNone();
  } catch (e) {
    await onFailure("tr", [page]);
    throw e;
  } finally {
    await page.context().close();
  }
});
