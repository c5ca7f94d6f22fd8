// The whole doctor-and-patient flow in the web client (control/webapp) served by the real
// teletip-control, relayed only through the real teletip-relay, at a desktop size (1280x800)
// and a phone size (390x844): log in, appointments grouped, the patient's consent from the
// client, the device check (preview and relay reachability), the patient's waiting room, the
// practitioner's live lobby (title badge), admission, video decoded both ways over a
// relay↔relay pair, mute seen by the other side, text chat both ways, End with its confirmation,
// the end-of-consultation screen and the appointment fulfilled. axe-core runs on every page and
// finds no serious or critical violation; no page logs a CSP violation. Screenshots of every
// page at both sizes go to artifacts/webapp/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, Relay, RELAXED_LIMITS, PASSWORD, freeUdpPort, tempDir } from "../signaling/lib/env.js";
import { AxeLog, SIZES, assertClean, launch, logIn, mediaStats, onFailure, openPage, publishNotice, shot, tabTo, until } from "./lib/web.js";

let control;
let relay;
let browser;
let c;
before(async () => {
  const dir = tempDir("teletip-webapp-");
  const relayPort = await freeUdpPort();
  control = await Control.start({
    name: "webapp",
    dir,
    extraToml: `${RELAXED_LIMITS}\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\n`,
  });
  control.createAdmin();
  relay = await Relay.start({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  c = await Clinic.open({ control });
  await publishNotice(c);
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  await control?.stop();
});

for (const [size, viewport] of Object.entries(SIZES)) {
  test(`doctor and patient, relay only, at ${viewport.width}x${viewport.height}`, async () => {
    await c.relogin();
    const practitioner = await c.practitioner(`Dr. Elif Kaya ${size}`);
    const patient = await c.patient(`Ayşe Yılmaz ${size}`);
    const appointment = await c.appointment(practitioner, patient);
    // Another, later appointment: the list groups it apart.
    await c.appointment(practitioner, patient, 60 * 24 * 3);
    const doc = await openPage(browser, `practitioner-${size}`, viewport);
    const pat = await openPage(browser, `patient-${size}`, viewport);
    const a11y = new AxeLog();
    try {
      // Log in.
      await pat.goto(control.url("/"));
      await pat.getByTestId("login-view").waitFor();
      await shot(pat, `${size}-01-login`);
      await a11y.check(pat, "login");
      await logIn(pat, control, patient);
      await logIn(doc, control, practitioner);

      // Appointments, grouped; only valid actions.
      const item = pat.locator(`[data-appointment-id="${appointment.id}"]`);
      await item.waitFor();
      assert.equal(await pat.getByTestId("group-today").locator(`[data-appointment-id="${appointment.id}"]`).count(), 1, "today's appointment under Today");
      assert.equal(await pat.getByTestId("group-upcoming").getByTestId("appointment").count(), 1, "the later one under Upcoming");
      await pat.getByText(`With Dr. Elif Kaya ${size}`).first().waitFor();
      assert.equal(await pat.getByTestId("group-upcoming").getByTestId("appointment-open").count(), 0, "no Join three days ahead");
      assert.equal(await item.getByTestId("appointment-cancel").count(), 0, "no Cancel for a started appointment");
      assert.match(await item.locator(".appt-time").textContent(), /[A-Z]{2,5}|GMT|UTC/, "a time zone with the time");
      await shot(pat, `${size}-02-appointments-patient`);
      await a11y.check(pat, "appointments");

      // The patient joins: the privacy notice first (consent from the client).
      await item.getByTestId("appointment-open").click();
      await pat.getByTestId("privacy-view").waitFor();
      await pat.getByTestId("notice-body").waitFor();
      await shot(pat, `${size}-03-privacy`);
      await a11y.check(pat, "privacy");
      await pat.getByTestId("consent-save").click();
      await pat.getByTestId("consent-error").waitFor();
      await pat.getByLabel(/Processing my health data/).check();
      await pat.getByTestId("consent-save").click();

      // The device check: preview, pickers, the relay reachable.
      await pat.getByTestId("check-view").waitFor();
      await pat.locator('[data-testid="relay-check"][data-result="ok"]').waitFor({ timeout: 20000 });
      await until("the camera preview", async () => ({ ok: await pat.getByTestId("preview").evaluate((v) => v.videoWidth > 0) }));
      assert.ok((await pat.getByTestId("camera-select").locator("option").count()) >= 2, "a camera to choose");
      await shot(pat, `${size}-04-device-check`);
      await a11y.check(pat, "device check");
      await pat.getByTestId("join").click();

      // The waiting room, with the practitioner's live status: not connected yet (the
      // practitioner's page is the appointment list, which has no signaling connection).
      await pat.getByTestId("lobby").waitFor();
      const status = pat.getByTestId("doctor-status");
      await pat.locator('[data-testid="doctor-status"][data-status="offline"]').waitFor();
      assert.match(await status.textContent(), /Your practitioner is not connected yet/);
      await shot(pat, `${size}-05-waiting-room`);
      await a11y.check(pat, "waiting room");

      // The practitioner's live lobby: the patient appears without a reload; a badge in the title.
      await doc.locator(`[data-appointment-id="${appointment.id}"] [data-testid="appointment-open"]`).click();
      await doc.getByTestId("check-view").waitFor();
      // The device check has no signaling connection either: still "not connected".
      assert.equal(await status.getAttribute("data-status"), "offline");
      await doc.getByTestId("join").click();
      const waiting = doc.getByTestId("waiting-list").getByTestId("waiting-patient");
      await waiting.waitFor();
      // The practitioner is in the room: the waiting room says so without a reload.
      await pat.locator('[data-testid="doctor-status"][data-status="here"]').waitFor();
      assert.match(await status.textContent(), /has opened your consultation and will let you in/);
      await shot(pat, `${size}-05b-waiting-room-doctor-here`);
      assert.match(await doc.title(), /^\(1\) /, "the title's badge counts the waiting patient");
      await shot(doc, `${size}-06-lobby`);
      await a11y.check(doc, "lobby");
      await waiting.getByTestId("admit").click();

      // The call: video decoded both ways over relay↔relay.
      for (const page of [doc, pat]) {
        const s = await until(`${page.label}: video decoded over a relayed pair`, async () => {
          const st = await mediaStats(page);
          return { ok: !!st && st.framesDecoded > 10 && st.local === "relay" && st.remote === "relay", value: st };
        });
        assert.equal(s.policy, "relay", `${page.label}: relay only`);
        await page.getByTestId("candidate-type").filter({ hasText: /^relay ↔ relay/ }).waitFor();
        await page.locator('[data-testid="quality"]:not([data-quality="none"])').waitFor({ timeout: 15000 });
      }
      assert.doesNotMatch(await doc.title(), /^\(/, "no badge once nobody waits");

      // Mute reaches the other side; chat both ways.
      await pat.getByTestId("toggle-audio").click();
      await doc.getByTestId("remote-media").filter({ hasText: "microphone off" }).waitFor();
      await pat.getByTestId("toggle-audio").click();
      await pat.getByTestId("toggle-chat").click();
      await pat.getByTestId("chat-send").and(pat.locator(":enabled")).waitFor();
      await pat.getByTestId("chat-input").fill("Merhaba, I can see you");
      await pat.getByTestId("chat-send").click();
      await doc.getByTestId("chat-lines").getByText("Merhaba, I can see you").waitFor();
      await doc.getByTestId("chat-input").fill("Good, let us start");
      await doc.getByTestId("chat-send").click();
      await pat.getByTestId("chat-lines").getByText("Good, let us start").waitFor();
      await shot(doc, `${size}-07-call-practitioner`);
      await shot(pat, `${size}-08-call-patient`);
      await a11y.check(doc, "call (practitioner)");
      await a11y.check(pat, "call (patient)");

      // End, confirmed; both see the end screen; the appointment is fulfilled.
      await doc.getByTestId("end").click();
      await doc.getByTestId("confirm-end").waitFor();
      await shot(doc, `${size}-09-confirm-end`);
      await a11y.check(doc, "end confirmation");
      await doc.getByTestId("confirm-end-yes").click();
      await doc.getByTestId("ended-view").waitFor();
      await pat.getByTestId("ended-view").waitFor();
      await shot(pat, `${size}-10-ended`);
      await a11y.check(pat, "end screen");
      // The status is committed before room:ended and the ack: read at once, no polling.
      assert.equal(await c.appointmentStatus(appointment.id), "fulfilled", "fulfilled when the end screen shows");
      for (const page of [doc, pat]) assertClean(page);
      a11y.assertNone();
    } catch (e) {
      await onFailure(size, [doc, pat]);
      throw e;
    } finally {
      await doc.context().close();
      await pat.context().close();
    }
  });
}

/** Presses `key` with the focus on `testid`, reached by Tab alone. */
async function keyOn(page, testid, key = "Enter") {
  await tabTo(page, testid);
  await page.keyboard.press(key);
}

async function logInByKeyboard(page, user) {
  await page.goto(control.url("/"));
  await page.getByTestId("login-view").waitFor();
  await tabTo(page, "login-email");
  await page.keyboard.type(user.email);
  await page.keyboard.press("Tab");
  await page.keyboard.type(PASSWORD);
  await page.keyboard.press("Enter");
  await page.getByTestId("appointments-view").waitFor();
}

test("the whole flow from the keyboard alone", async () => {
  await c.relogin();
  const { practitioner, patient, appointment } = await c.pair({ practitioner: "Dr. Kemal Tuna", patient: "Selin Ak" });
  const doc = await openPage(browser, "practitioner-keyboard", SIZES.desktop);
  const pat = await openPage(browser, "patient-keyboard", SIZES.desktop);
  try {
    await logInByKeyboard(pat, patient);
    await logInByKeyboard(doc, practitioner);
    await pat.locator(`[data-appointment-id="${appointment.id}"]`).waitFor();
    await keyOn(pat, "appointment-open");
    await pat.getByTestId("privacy-view").waitFor();
    await keyOn(pat, "consent-health-data-processing", "Space");
    await keyOn(pat, "consent-save");
    await pat.getByTestId("check-view").waitFor();
    await keyOn(pat, "join");
    await pat.getByTestId("lobby").waitFor();

    await doc.locator(`[data-appointment-id="${appointment.id}"]`).waitFor();
    await keyOn(doc, "appointment-open");
    await doc.getByTestId("check-view").waitFor();
    await keyOn(doc, "join");
    await doc.getByTestId("waiting-patient").waitFor();
    await keyOn(doc, "admit");
    for (const page of [doc, pat]) {
      await until(`${page.label}: video decoded`, async () => {
        const st = await mediaStats(page);
        return { ok: !!st && st.framesDecoded > 5, value: st };
      });
    }
    await keyOn(pat, "toggle-audio");
    await doc.getByTestId("remote-media").filter({ hasText: "microphone off" }).waitFor();
    // Chat from the keyboard: open it, type, Enter sends.
    await keyOn(pat, "toggle-chat");
    await pat.getByTestId("chat-send").and(pat.locator(":enabled")).waitFor();
    await tabTo(pat, "chat-input");
    await pat.keyboard.type("typed without a mouse");
    await pat.keyboard.press("Enter");
    await doc.getByTestId("chat-lines").getByText("typed without a mouse").waitFor();
    // Hang up (patient) through its confirmation: Escape keeps the call, the dialog's Yes ends it.
    await keyOn(pat, "hangup");
    await pat.getByTestId("confirm-hangup").waitFor();
    await pat.keyboard.press("Escape");
    await pat.getByTestId("call").waitFor();
    await keyOn(pat, "hangup");
    await pat.getByTestId("confirm-hangup").waitFor();
    await keyOn(pat, "confirm-hangup-yes");
    await pat.getByTestId("ended-view").waitFor();
    await shot(pat, "desktop-11-hung-up");
    // End (practitioner) from the keyboard.
    await keyOn(doc, "end");
    await doc.getByTestId("confirm-end").waitFor();
    await keyOn(doc, "confirm-end-yes");
    await doc.getByTestId("ended-view").waitFor();
    // The status is committed before room:ended and the ack: read at once, no polling.
    assert.equal(await c.appointmentStatus(appointment.id), "fulfilled", "fulfilled when the end screen shows");
    for (const page of [doc, pat]) assertClean(page);
  } catch (e) {
    await onFailure("keyboard", [doc, pat]);
    throw e;
  } finally {
    await doc.context().close();
    await pat.context().close();
  }
});
