// Local times, always with the time zone, so a patient abroad sees which clock is meant.
import type { Lang } from "./i18n.js";

const locale = (lang: Lang) => (lang === "tr" ? "tr-TR" : "en-GB");

export function when(lang: Lang, startIso: string, endIso: string): string {
  const start = new Date(startIso);
  const end = new Date(endIso);
  const day = start.toLocaleDateString(locale(lang), { weekday: "short", year: "numeric", month: "short", day: "numeric" });
  const from = start.toLocaleTimeString(locale(lang), { hour: "2-digit", minute: "2-digit" });
  const to = end.toLocaleTimeString(locale(lang), { hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  return `${day}, ${from}–${to}`;
}

export function clock(lang: Lang, iso: string | number): string {
  return new Date(iso).toLocaleTimeString(locale(lang), { hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
}

/** today / upcoming / past by the person's local calendar day and the appointment's end. */
export function groupOf(startIso: string, endIso: string, now = new Date()): "today" | "upcoming" | "past" {
  const start = new Date(startIso);
  const end = new Date(endIso);
  const sameDay = start.getFullYear() === now.getFullYear() && start.getMonth() === now.getMonth() && start.getDate() === now.getDate();
  if (sameDay) return "today";
  return end.getTime() < now.getTime() ? "past" : "upcoming";
}
