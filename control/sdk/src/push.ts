// Web Push for practitioners (docs/notifications.md): the VAPID public key, and subscribing a
// browser's PushManager to the practitioner's notifications (a waiting patient, bookings,
// reminders). The push payload is JSON: { type, id, appointmentId, link, reminderMinutesBefore? }.
// The types below are structural so the SDK needs no DOM typings (it also runs in Node and
// React Native, where the caller passes what stands for a PushManager).
import type { TeletipClient } from "./client.js";

/** A browser's `PushSubscription.toJSON()`. */
export interface PushSubscriptionJson {
  endpoint: string;
  expirationTime?: number | null;
  keys: { p256dh: string; auth: string };
}

/** A subscription as the server lists it (the endpoint itself is not shown again). */
export interface PushSubscriptionView {
  id: string;
  /** The push service's origin, e.g. `https://fcm.googleapis.com`. */
  pushService: string;
  createdAt: string;
}

/** What a browser's `PushSubscription` offers that the SDK uses. */
export interface BrowserPushSubscriptionLike {
  toJSON(): unknown;
  unsubscribe(): Promise<boolean>;
}

/** What a browser's `PushManager` (from `serviceWorkerRegistration.pushManager`) offers. */
export interface PushManagerLike {
  subscribe(options: { userVisibleOnly: boolean; applicationServerKey: Uint8Array }): Promise<BrowserPushSubscriptionLike>;
}

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** base64url (padding optional) to bytes, without `atob` (not in every runtime). */
export function base64UrlToBytes(text: string): Uint8Array {
  const clean = text.replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of clean) {
    const v = B64URL.indexOf(ch);
    if (v < 0) throw new Error(`not base64url: ${JSON.stringify(ch)}`);
    value = (value << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** The server's VAPID public key (base64url): a 404 `ApiError` while Web Push is off. */
export async function vapidPublicKey(client: TeletipClient): Promise<string> {
  const answer = await client.request<{ publicKey: string }>("GET", "/v1/push/vapid-public-key");
  return answer.publicKey;
}

function asSubscriptionJson(value: unknown): PushSubscriptionJson {
  const v = value as Partial<PushSubscriptionJson> | null;
  if (!v || typeof v.endpoint !== "string" || !v.keys || typeof v.keys.p256dh !== "string" || typeof v.keys.auth !== "string") {
    throw new Error("the browser's push subscription has no endpoint or keys");
  }
  return { endpoint: v.endpoint, expirationTime: v.expirationTime ?? null, keys: { p256dh: v.keys.p256dh, auth: v.keys.auth } };
}

/**
 * Subscribes this browser (its `pushManager`) to the signed-in practitioner's notifications:
 * asks the browser for a subscription against the server's VAPID key, then registers it.
 * Practitioners only (others get a 403 `ApiError`). The browser asks the user for permission.
 */
export async function subscribePush(
  client: TeletipClient,
  pushManager: PushManagerLike,
): Promise<{ view: PushSubscriptionView; subscription: BrowserPushSubscriptionLike }> {
  const key = base64UrlToBytes(await vapidPublicKey(client));
  const subscription = await pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
  const body = asSubscriptionJson(subscription.toJSON());
  const view = await client.request<PushSubscriptionView>("POST", "/v1/me/push-subscriptions", body);
  return { view, subscription };
}

/** The signed-in user's subscriptions, oldest first. */
export async function listPushSubscriptions(client: TeletipClient): Promise<PushSubscriptionView[]> {
  return client.request<PushSubscriptionView[]>("GET", "/v1/me/push-subscriptions");
}

/**
 * Removes subscription `id` on the server and, when given, the browser's own subscription
 * too (so the push service forgets it as well).
 */
export async function unsubscribePush(client: TeletipClient, id: string, subscription?: BrowserPushSubscriptionLike): Promise<void> {
  await client.request<void>("DELETE", `/v1/me/push-subscriptions/${encodeURIComponent(id)}`);
  if (subscription) await subscription.unsubscribe();
}
