// Operator and debug settings, not offered to patients: relay only is the default (neither side
// learns the other's addresses); `?direct=1` once, or localStorage `teletip.allowDirect` = "1",
// lets the browser also try direct paths (for an operator diagnosing a network).
export function relayOnly(): boolean {
  const q = new URLSearchParams(location.search);
  if (q.get("direct") === "1") localStorage.setItem("teletip.allowDirect", "1");
  if (q.get("direct") === "0") localStorage.removeItem("teletip.allowDirect");
  return localStorage.getItem("teletip.allowDirect") !== "1";
}

/** The devices chosen on the device check, used when the call starts. */
export const chosenDevices: { camera: string | null; microphone: string | null } = { camera: null, microphone: null };

/**
 * Operator/debug override of the call's recovery budget and timeouts (localStorage
 * `teletip.debug.call`, JSON: {"maxNewConnectionsPerMinute", "initialBackoffMs", "maxBackoffMs",
 * "connectTimeoutMs"}). Unset in normal use: the SDK's defaults apply (at most 4 new
 * connections a minute). The failure test uses it to see the whole budget spent in seconds.
 */
export function callTuning(): { limits?: Record<string, number>; connectTimeoutMs?: number } {
  try {
    const raw = localStorage.getItem("teletip.debug.call");
    if (!raw) return {};
    const v = JSON.parse(raw) as Record<string, unknown>;
    const num = (k: string) => (typeof v[k] === "number" && Number.isFinite(v[k]) && (v[k] as number) >= 0 ? (v[k] as number) : undefined);
    const limits: Record<string, number> = {};
    for (const k of ["maxNewConnectionsPerMinute", "initialBackoffMs", "maxBackoffMs"]) {
      const n = num(k);
      if (n !== undefined) limits[k] = n;
    }
    const connectTimeoutMs = num("connectTimeoutMs");
    return { limits, ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}) };
  } catch {
    return {};
  }
}
