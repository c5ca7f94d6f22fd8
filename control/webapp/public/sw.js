// The web client's service worker (served at /sw.js, scope /, under the same strict
// Content-Security-Policy as the page: this file is the only code it runs). It does one job:
// Web Push for practitioners (docs/notifications.md section 7). A push carries no name, time or
// diagnosis, only { type, id, appointmentId, link }, so the notification says what kind of thing
// happened in generic words, and a click opens `link`. It caches nothing and handles no fetch.
"use strict";

const TEXTS = {
  en: {
    "lobby.patient-waiting": "A patient is waiting",
    "appointment.booked": "A new appointment was booked",
    "appointment.rescheduled": "An appointment was moved",
    "appointment.cancelled": "An appointment was cancelled",
    "appointment.reminder": "An appointment starts soon",
    other: "Something changed in your appointments",
    body: "Open teletip to see it.",
  },
  tr: {
    "lobby.patient-waiting": "Bir hasta bekliyor",
    "appointment.booked": "Yeni bir randevu alındı",
    "appointment.rescheduled": "Bir randevunun zamanı değişti",
    "appointment.cancelled": "Bir randevu iptal edildi",
    "appointment.reminder": "Bir randevu birazdan başlıyor",
    other: "Randevularınızda bir değişiklik var",
    body: "Görmek için teletip'i açın.",
  },
};

function texts() {
  return (self.navigator.language || "").toLowerCase().startsWith("tr") ? TEXTS.tr : TEXTS.en;
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let msg = {};
  try {
    msg = event.data ? event.data.json() : {};
  } catch {
    msg = {};
  }
  const t = texts();
  const type = typeof msg.type === "string" ? msg.type : "";
  const title = Object.prototype.hasOwnProperty.call(t, type) ? t[type] : t.other;
  // Only a web link is opened on a click; anything else opens the client's start page.
  let link = "/";
  if (typeof msg.link === "string" && /^https?:\/\//.test(msg.link)) link = msg.link;
  event.waitUntil(
    self.registration.showNotification(title, {
      body: t.body,
      // One notification per event: a retried delivery replaces it instead of adding another.
      tag: typeof msg.id === "string" ? msg.id : type,
      data: { link, type },
      requireInteraction: type === "lobby.patient-waiting",
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const link = (event.notification.data && event.notification.data.link) || "/";
  event.waitUntil(self.clients.openWindow(link));
});
