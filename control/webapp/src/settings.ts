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
