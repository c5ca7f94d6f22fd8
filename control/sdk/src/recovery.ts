/**
 * What a call does when its media path fails, as a pure function of what happened when: first an
 * ICE restart on the same RTCPeerConnection (no new allocation budget spent), then a new
 * RTCPeerConnection after a capped exponential backoff, at most `maxNewConnectionsPerMinute`
 * of them in any 60 s (each opens relay allocations), and after that it stops and reports.
 * No clock is read here: callers pass `now`.
 */
export interface RecoveryLimits {
  /** New RTCPeerConnections allowed in any sliding minute, the first one included (default 4). */
  maxNewConnectionsPerMinute: number;
  /** Wait before the first replacement connection (default 1 s); doubles each time. */
  initialBackoffMs: number;
  /** The longest wait between replacement connections (default 15 s). */
  maxBackoffMs: number;
}

export const DEFAULT_RECOVERY_LIMITS: RecoveryLimits = {
  maxNewConnectionsPerMinute: 4,
  initialBackoffMs: 1000,
  maxBackoffMs: 15000,
};

export type RecoveryStep = { action: "ice-restart" } | { action: "new-connection"; delayMs: number } | { action: "give-up" };

const WINDOW_MS = 60_000;

export class RecoveryPolicy {
  private readonly created: number[] = [];
  private restartedSinceConnected = false;
  private replacementsSinceConnected = 0;

  constructor(readonly limits: RecoveryLimits = DEFAULT_RECOVERY_LIMITS) {
    if (!(limits.maxNewConnectionsPerMinute >= 1)) throw new RangeError("maxNewConnectionsPerMinute must be at least 1");
    if (!(limits.initialBackoffMs >= 0) || !(limits.maxBackoffMs >= limits.initialBackoffMs)) throw new RangeError("backoff: 0 <= initialBackoffMs <= maxBackoffMs");
  }

  /** Whether a new RTCPeerConnection may be made now (the first one, or one the peer asks for). */
  mayCreate(now: number): boolean {
    this.forgetOlderThan(now - WINDOW_MS);
    return this.created.length < this.limits.maxNewConnectionsPerMinute;
  }

  /** Records a new RTCPeerConnection. */
  recordCreated(now: number): void {
    this.created.push(now);
    this.restartedSinceConnected = false;
  }

  /** The media path works: the next failure starts again with an ICE restart and a short wait. */
  recordConnected(): void {
    this.restartedSinceConnected = false;
    this.replacementsSinceConnected = 0;
  }

  /** The media path failed (or never came up): what to do next. */
  onFailure(now: number, canRestartIce: boolean): RecoveryStep {
    if (canRestartIce && !this.restartedSinceConnected) {
      this.restartedSinceConnected = true;
      return { action: "ice-restart" };
    }
    this.forgetOlderThan(now - WINDOW_MS);
    const delayMs = Math.min(this.limits.maxBackoffMs, this.limits.initialBackoffMs * 2 ** this.replacementsSinceConnected);
    // The connection would be made after the wait: count it against the window as it will be then.
    const stillCounted = this.created.filter((t) => t > now + delayMs - WINDOW_MS).length;
    if (stillCounted >= this.limits.maxNewConnectionsPerMinute) return { action: "give-up" };
    this.replacementsSinceConnected++;
    return { action: "new-connection", delayMs };
  }

  /** How many RTCPeerConnections were made in the last minute. */
  createdInLastMinute(now: number): number {
    this.forgetOlderThan(now - WINDOW_MS);
    return this.created.length;
  }

  private forgetOlderThan(t: number): void {
    while (this.created.length && (this.created[0] as number) <= t) this.created.shift();
  }
}
