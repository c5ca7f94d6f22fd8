// The one TeletipClient of the page, and the window.teletip view tests and operators read.
import { TeletipClient, type PeerConnectionLike } from "@teletip/sdk";
import { createContext, useContext } from "react";

// Tokens stay in memory (no storage): a reload means logging in again, as before; nothing a
// script injected later could read from localStorage.
export const client = new TeletipClient({ baseUrl: location.origin });

/** Access tokens this page received (login and refreshes): a test sees the refresh happen. */
let tokensReceived = 0;
client.auth.on("tokens", () => {
  tokensReceived++;
});

/** What the page knows, for tests and debugging: window.teletip.pc, window.teletip.state. */
export const debugView: { pc: PeerConnectionLike | null; state: Record<string, unknown>; live: () => Record<string, unknown> } = {
  pc: null,
  state: {},
  live: () => ({}),
};
Object.defineProperty(window, "teletip", {
  value: Object.freeze({
    get pc() {
      return debugView.pc;
    },
    get state() {
      return Object.freeze({ ...debugView.state, ...debugView.live(), loggedIn: client.user !== null, user: client.user, tokensReceived });
    },
  }),
  writable: false,
  configurable: false,
  enumerable: true,
});

export interface Flash {
  text: string;
  kind: "info" | "error";
}
export const FlashContext = createContext<(f: Flash | null) => void>(() => undefined);
export const useFlash = () => useContext(FlashContext);

/** A plain message for an error from the SDK or the browser. */
export function reason(e: unknown): string {
  if (e && typeof e === "object" && "detail" in e && typeof (e as { detail?: unknown }).detail === "string") return (e as { detail: string }).detail;
  if (e instanceof Error) return e.message;
  return String(e);
}
