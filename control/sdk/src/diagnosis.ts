import { TeletipError } from "./errors.js";

/**
 * Why a call failed, in words a patient can act on. The cause is chosen from what the call saw
 * (no clock is read here): the relay's errors on gathering, whether any relayed candidate came,
 * the credentials' expiry, the peer's presence, a network change.
 */
export type CallFailureCause =
  | "permission-denied"
  | "peer-left"
  | "credentials-expired"
  | "credentials-revoked"
  | "relay-full"
  | "relay-unreachable"
  | "network-changed"
  | "media-path-failed"
  | "session-ended"
  | "consultation-closed";

export interface FailureFacts {
  now: number;
  /** When the credentials in use expire (ms since the epoch). */
  credentialsExpireAt: number;
  /** STUN/TURN error codes from `icecandidateerror` events (401, 486, 508, 701…). */
  candidateErrorCodes: number[];
  /** Whether the relay gave at least one relayed candidate. */
  relayCandidateSeen: boolean;
  peerPresent: boolean;
  /** The app reported a network change since the last working connection. */
  networkChanged: boolean;
}

export function diagnose(f: FailureFacts): CallFailureCause {
  if (!f.peerPresent) return "peer-left";
  if (f.now >= f.credentialsExpireAt) return "credentials-expired";
  // 401 to credentials that have not expired: the control plane revoked them.
  if (f.candidateErrorCodes.includes(401)) return "credentials-revoked";
  // 486 Allocation Quota Reached, 508 Insufficient Capacity (RFC 8656).
  if (f.candidateErrorCodes.some((c) => c === 486 || c === 508)) return "relay-full";
  if (f.networkChanged) return "network-changed";
  if (!f.relayCandidateSeen) return "relay-unreachable";
  return "media-path-failed";
}

/** A plain message and the way forward, for each cause. */
export const FAILURE_ADVICE: Record<CallFailureCause, { message: string; nextStep: string }> = {
  "permission-denied": {
    message: "The camera or microphone may not be used.",
    nextStep: "Allow camera and microphone access in the settings, then join again.",
  },
  "peer-left": { message: "The other participant left the consultation.", nextStep: "Wait for them to rejoin; the call resumes when they do." },
  "credentials-expired": {
    message: "The connection permit for the video relay has expired.",
    nextStep: "Join the consultation again to get a new one (inside its time window).",
  },
  "credentials-revoked": {
    message: "The video relay no longer accepts this consultation (it was ended or your session was closed).",
    nextStep: "Check that the consultation is still open and join again; log in again if asked.",
  },
  "relay-full": { message: "The video relay is at capacity.", nextStep: "Try again in a few minutes; if it persists, tell the clinic." },
  "relay-unreachable": {
    message: "The video relay cannot be reached from this network.",
    nextStep: "Try another network (for example mobile data instead of a guest Wi-Fi), then join again.",
  },
  "network-changed": { message: "The network changed and the call could not move to it.", nextStep: "Join again once the connection is stable." },
  "media-path-failed": {
    message: "Audio and video could not get through between you and the other participant.",
    nextStep: "Join again; if it fails again, try another network or tell the clinic.",
  },
  "session-ended": { message: "Your session has ended.", nextStep: "Log in again." },
  "consultation-closed": { message: "The consultation has ended or its time window has closed.", nextStep: "Book or open another appointment." },
};

/** A call failure: `cause` to branch on, a plain `message`, and `nextStep` to show the person. */
export class CallError extends TeletipError {
  override readonly cause: CallFailureCause;
  readonly nextStep: string;

  constructor(cause: CallFailureCause, detail?: string) {
    const advice = FAILURE_ADVICE[cause];
    super(detail ? `${advice.message} (${detail})` : advice.message);
    this.cause = cause;
    this.nextStep = advice.nextStep;
  }
}
