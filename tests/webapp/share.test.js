// During a call in the web client (control/webapp), in Debian's Chromium through the real
// teletip-relay: screen share and device switches reach the other side. Chromium's fake capture
// gives a 1280x720 (16:9) "screen" to getDisplayMedia (with --use-fake-ui-for-media-stream it
// picks it without a prompt) and 640x480 (4:3) cameras, three of them with
// `--use-fake-device-for-media-stream=device-count=3`, and three microphones. (The second fake
// camera, `fake_device_1`, delivers Y16 depth frames that WebRTC does not send; the third is
// used.) So the other
// side's decoded frames turn 16:9 while sharing and 4:3 again after, and a switched camera or
// microphone is a new sender track whose media keeps arriving.
//
// The control plane runs with a join window that is not the default (60 minutes before, 45
// after): the appointment list shows Join and "you can join from" by the server's window.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Clinic } from "../signaling/lib/clinic.js";
import { Control, Relay, RELAXED_LIMITS, freeUdpPort, tempDir } from "../signaling/lib/env.js";
import { SIZES, assertClean, launch, logIn, mediaStats, onFailure, openPage, shot, until } from "./lib/web.js";

let control;
let relay;
let browser;
let c;
before(async () => {
  const dir = tempDir("teletip-webapp-share-");
  const relayPort = await freeUdpPort();
  control = await Control.start({
    name: "webapp-share",
    dir,
    extraToml: `${RELAXED_LIMITS}\n[scheduling]\njoin-before-minutes = 60\njoin-after-minutes = 45\n[[ice.relays]]\nhost = "127.0.0.1"\nudp-port = ${relayPort}\n`,
  });
  control.createAdmin();
  relay = await Relay.start({ secretFile: join(control.dataDir, "relay.secret"), port: relayPort, dir });
  c = await Clinic.open({ control });
  browser = await launch({ cameras: 3 });
});
after(async () => {
  await browser?.close();
  await relay?.stop();
  await control?.stop();
});

/** What the page receives (the remote video's decoded frames) and sends (its senders' tracks). */
function media(page) {
  return page.evaluate(async () => {
    const pc = window.teletip.pc;
    if (!pc) return null;
    const stats = [...(await pc.getStats()).values()];
    const video = stats.find((s) => s.type === "inbound-rtp" && s.kind === "video");
    const audio = stats.find((s) => s.type === "inbound-rtp" && s.kind === "audio");
    const sent = Object.fromEntries(pc.getSenders().filter((s) => s.track).map((s) => [s.track.kind, { id: s.track.id, label: s.track.label }]));
    return {
      width: video?.frameWidth ?? 0,
      height: video?.frameHeight ?? 0,
      framesDecoded: video?.framesDecoded ?? 0,
      trackIdentifier: video?.trackIdentifier ?? null,
      audioPackets: audio?.packetsReceived ?? 0,
      sent,
    };
  });
}

const ratio = (m) => (m && m.height ? m.width / m.height : 0);

test("the join window is the server's, not the client's default", async () => {
  const practitioner = await c.practitioner("Dr. Window");
  const patient = await c.patient("Window Patient");
  // 40 minutes ahead: inside a 60-minute window (the default 15 would say "from …").
  const soon = await c.appointment(practitioner, patient, 40, 20);
  // 100 minutes ahead: opens 60 minutes before, at start − 60 min.
  const later = await c.appointment(practitioner, patient, 100, 20);
  const page = await openPage(browser, "window", SIZES.desktop);
  try {
    await logIn(page, control, patient);
    const first = page.locator(`[data-appointment-id="${soon.id}"]`);
    await first.getByTestId("appointment-open").waitFor();
    const second = page.locator(`[data-appointment-id="${later.id}"]`);
    assert.equal(await second.getByTestId("appointment-open").count(), 0, "no Join 100 minutes ahead");
    const opens = new Date(Date.parse(later.start) - 60 * 60000);
    const hhmm = opens.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" });
    assert.match(await second.textContent(), new RegExp(`You can join from ${hhmm}`), "opens 60 minutes before");
    assertClean(page);
  } catch (e) {
    await onFailure("window", [page]);
    throw e;
  } finally {
    await page.context().close();
  }
});

test("screen share and camera and microphone switches during a call reach the other side", async () => {
  const practitioner = await c.practitioner("Dr. Share");
  const patient = await c.patient("Share Patient");
  const appointment = await c.appointment(practitioner, patient);
  const doc = await openPage(browser, "share-practitioner", SIZES.desktop);
  const pat = await openPage(browser, "share-patient", SIZES.desktop);
  try {
    await logIn(pat, control, patient);
    await logIn(doc, control, practitioner);
    for (const page of [doc, pat]) {
      await page.locator(`[data-appointment-id="${appointment.id}"] [data-testid="appointment-open"]`).click();
      await page.getByTestId("check-view").waitFor();
      await page.getByTestId("join").click();
    }
    await doc.getByTestId("waiting-list").getByTestId("admit").click();
    for (const page of [doc, pat]) {
      await until(`${page.label}: video decoded`, async () => {
        const st = await mediaStats(page);
        return { ok: !!st && st.framesDecoded > 10, value: st };
      });
    }
    const camera = await until("the practitioner decodes the patient's 4:3 camera", async () => {
      const m = await media(doc);
      return { ok: !!m && Math.abs(ratio(m) - 4 / 3) < 0.02, value: m };
    });
    const cameraTrack = (await media(pat)).sent.video;
    assert.match(cameraTrack.label, /fake_device_0/, "the first camera is sent");

    // Share the screen: the patient's video sender carries the screen track; the practitioner
    // decodes 16:9 frames on the same receiver (replaceTrack: no renegotiation).
    await pat.getByTestId("toggle-share").click();
    await pat.locator('[data-testid="toggle-share"][aria-pressed="true"]').waitFor();
    const sharing = await until("the practitioner decodes the 16:9 screen", async () => {
      const m = await media(doc);
      return { ok: !!m && Math.abs(ratio(m) - 16 / 9) < 0.02 && m.framesDecoded > camera.framesDecoded, value: m };
    });
    assert.equal(sharing.trackIdentifier, camera.trackIdentifier, "the same receiver track (replaceTrack)");
    const screenTrack = (await media(pat)).sent.video;
    assert.notEqual(screenTrack.id, cameraTrack.id, "the sender's track is the screen's");
    await shot(doc, "share-screen-received");

    // Stop sharing: the camera comes back (the same camera track, kept alive meanwhile).
    await pat.getByTestId("toggle-share").click();
    await pat.locator('[data-testid="toggle-share"][aria-pressed="false"]').waitFor();
    const back = await until("the practitioner decodes the camera again", async () => {
      const m = await media(doc);
      return { ok: !!m && Math.abs(ratio(m) - 4 / 3) < 0.02 && m.framesDecoded > sharing.framesDecoded, value: m };
    });
    assert.equal((await media(pat)).sent.video.id, cameraTrack.id, "the camera track is sent again");

    // Switch to another camera in the call's picker: a new sender track; the practitioner keeps
    // decoding.
    const cameras = await pat.getByTestId("call-camera").locator("option").evaluateAll((os) => os.map((o) => ({ value: o.value, text: o.textContent })));
    const second = cameras.find((o) => /fake_device_2/.test(o.text));
    assert.ok(second, `another camera in the call's picker: ${JSON.stringify(cameras)}`);
    await pat.getByTestId("call-camera").selectOption(second.value);
    await until("the other camera is sent", async () => {
      const m = await media(pat);
      return { ok: /fake_device_2/.test(m?.sent.video?.label ?? ""), value: m?.sent };
    });
    await until("the practitioner keeps decoding after the camera switch", async () => {
      const m = await media(doc);
      return { ok: !!m && m.framesDecoded > back.framesDecoded + 20, value: m };
    });

    // Switch the microphone: a new audio sender track; the practitioner keeps receiving audio.
    const before = await media(pat);
    const mics = await pat.getByTestId("call-microphone").locator("option").evaluateAll((os) => os.map((o) => ({ value: o.value, text: o.textContent })));
    const mic = mics.find((o) => o.value && o.text !== before.sent.audio.label);
    assert.ok(mic, `another microphone in the call's picker: ${JSON.stringify(mics)}`);
    const heard = (await media(doc)).audioPackets;
    await pat.getByTestId("call-microphone").selectOption(mic.value);
    await until("the other microphone is sent", async () => {
      const m = await media(pat);
      return { ok: !!m?.sent.audio && m.sent.audio.id !== before.sent.audio.id && m.sent.audio.label === mic.text, value: m?.sent };
    });
    await until("the practitioner keeps receiving audio after the switch", async () => {
      const m = await media(doc);
      return { ok: !!m && m.audioPackets > heard + 50, value: m };
    });
    for (const page of [doc, pat]) assertClean(page);
  } catch (e) {
    await onFailure("share", [doc, pat]);
    throw e;
  } finally {
    await doc.context().close();
    await pat.context().close();
  }
});
