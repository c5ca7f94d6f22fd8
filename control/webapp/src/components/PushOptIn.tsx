// "Notify me in this browser": Web Push for practitioners (docs/notifications.md section 7). The
// service worker (/sw.js, public/sw.js) shows the notification; this setting subscribes the
// browser's PushManager against the server's VAPID key and registers it with the SDK, or takes
// it back. Hidden while the server has Web Push off (its VAPID key answers 404).
import { ApiError, subscribePush, unsubscribePush, vapidPublicKey, type PushManagerLike } from "@teletip/sdk";
import { useEffect, useState } from "react";
import { useT } from "../i18n.js";
import { client, reason } from "../session.js";

/** The server's id of this browser's subscription (it is needed to remove it again). */
const STORED_ID = "teletip.push.subscription";

/**
 * How long the browser's own subscribe may take. Without a way to its vendor's push service
 * (offline, a firewall) Chromium's subscribe never settles in a normal profile (it keeps
 * retrying its registration); the person is told after this instead of a spinner for ever.
 */
const SUBSCRIBE_TIMEOUT_MS = 15000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new DOMException("the push service did not answer", "TimeoutError")), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

type State = "unknown" | "hidden" | "off" | "on" | "busy";
type Problem = "unreachable" | "blocked" | { other: string } | null;

async function registration(): Promise<ServiceWorkerRegistration> {
  await navigator.serviceWorker.register("/sw.js", { scope: "/" });
  return navigator.serviceWorker.ready;
}

export function PushOptIn() {
  const { t } = useT();
  const [state, setState] = useState<State>("unknown");
  const [problem, setProblem] = useState<Problem>(null);

  useEffect(() => {
    let gone = false;
    (async () => {
      if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
        if (!gone) setState("hidden");
        return;
      }
      try {
        await vapidPublicKey(client);
      } catch (e) {
        // 404: Web Push is off on this server; anything else: not offered now either.
        if (!gone) setState("hidden");
        if (!(e instanceof ApiError && e.status === 404)) console.warn("web push:", reason(e));
        return;
      }
      const reg = await registration();
      const sub = await reg.pushManager.getSubscription();
      if (!gone) setState(sub && localStorage.getItem(STORED_ID) ? "on" : "off");
    })().catch((e) => {
      if (!gone) {
        setState("off");
        setProblem({ other: reason(e) });
      }
    });
    return () => {
      gone = true;
    };
  }, []);

  async function turnOn() {
    setState("busy");
    setProblem(null);
    try {
      const permission = await Notification.requestPermission();
      if (permission !== "granted") {
        setProblem("blocked");
        setState("off");
        return;
      }
      const reg = await registration();
      let subscribed;
      try {
        const manager: PushManagerLike = {
          subscribe: (options) => withTimeout(reg.pushManager.subscribe(options as PushSubscriptionOptionsInit), SUBSCRIBE_TIMEOUT_MS),
        };
        subscribed = await subscribePush(client, manager);
      } catch (e) {
        // The browser's own subscribe fails (or never answers) when it cannot reach its
        // vendor's push service: offline, a firewall, a private window, a build without one.
        if (e instanceof DOMException) setProblem(e.name === "NotAllowedError" ? "blocked" : "unreachable");
        else setProblem({ other: reason(e) });
        setState("off");
        return;
      }
      localStorage.setItem(STORED_ID, subscribed.view.id);
      setState("on");
    } catch (e) {
      setProblem({ other: reason(e) });
      setState("off");
    }
  }

  async function turnOff() {
    setState("busy");
    setProblem(null);
    try {
      const reg = await registration();
      const sub = await reg.pushManager.getSubscription();
      const id = localStorage.getItem(STORED_ID);
      if (id) await unsubscribePush(client, id, sub ?? undefined);
      else await sub?.unsubscribe();
      localStorage.removeItem(STORED_ID);
      setState("off");
    } catch (e) {
      setProblem({ other: reason(e) });
      setState("on");
    }
  }

  if (state === "hidden" || state === "unknown") return null;
  return (
    <div className="card stack" data-testid="push-setting" data-state={state}>
      <label className="check">
        <input
          type="checkbox"
          checked={state === "on"}
          disabled={state === "busy"}
          onChange={(e) => void (e.target.checked ? turnOn() : turnOff())}
          data-testid="push-toggle"
        />
        <span>{t("pushOptIn")}</span>
      </label>
      <p className="muted">{t("pushHelp")}</p>
      {problem && (
        <p className="alert" role="alert" data-testid="push-problem" data-problem={typeof problem === "string" ? problem : "other"}>
          {problem === "unreachable" ? t("pushUnreachable") : problem === "blocked" ? t("pushBlocked") : t("pushFailed", { reason: problem.other })}
        </p>
      )}
    </div>
  );
}
