import { systemClock, type Clock } from "./clock.js";
import { CallError, diagnose, type CallFailureCause } from "./diagnosis.js";
import { ApiError, SessionEndedError, SignalingError } from "./errors.js";
import { Emitter } from "./events.js";
import { DEFAULT_RECOVERY_LIMITS, RecoveryPolicy, type RecoveryLimits } from "./recovery.js";
import type { CandidateInit, JoinedRoom, RoomPeer, Signaling } from "./signaling.js";
import type { IceConfig } from "./types.js";
import {
  platformPeerConnection,
  type DataChannelLike,
  type MediaStreamLike,
  type MediaTrackLike,
  type PeerConnectionFactory,
  type PeerConnectionLike,
  type RtcConfiguration,
} from "./webrtc.js";

export type CallState = "waiting" | "connecting" | "connected" | "recovering" | "failed" | "closed";

export type CallEvents = {
  state: (state: CallState) => void;
  /** A remote audio or video track. */
  track: (track: MediaTrackLike, streams: readonly MediaStreamLike[]) => void;
  /** The data channel opened (on every new connection). */
  "channel-open": () => void;
  message: (data: unknown) => void;
  /** A failure with its cause. `peer-left` is not final: the call goes on waiting for the peer. */
  failed: (error: CallError) => void;
  /** A new RTCPeerConnection was made (for getStats and the like). */
  "peer-connection": (pc: PeerConnectionLike) => void;
};

export interface CallOptions {
  signaling: Signaling;
  /** Makes an RTCPeerConnection; default the platform's global one. */
  peerConnection?: PeerConnectionFactory;
  /** Relay only (default true): neither peer learns the other's addresses. */
  relayOnly?: boolean;
  /** Camera and microphone to send (see `openLocalMedia`). */
  localStream?: MediaStreamLike;
  /** A data channel both sides open (negotiated, id 0), for chat or app messages. */
  dataChannel?: { label: string };
  limits?: Partial<RecoveryLimits>;
  /** A media path not up within this time counts as failed (default 20 s). */
  connectTimeoutMs?: number;
  /** `disconnected` for this long counts as failed (default 8 s). */
  disconnectedGraceMs?: number;
  /** Fresh relay credentials (default: the consultation session endpoint). */
  refreshIce?: () => Promise<IceConfig>;
  clock?: Clock;
}

function fingerprint(sdp: string | undefined): string | null {
  const m = /^a=fingerprint:(.*)$/m.exec(sdp ?? "");
  return m?.[1]?.trim() ?? null;
}

/**
 * A consultation call over one joined room: wraps RTCPeerConnection, lets the practitioner offer
 * and the patient answer, trickles candidates, refreshes relay credentials before
 * `refreshAfter`, and recovers a failed media path with an ICE restart, then new connections
 * within a budget (RecoveryPolicy): it never opens more than a handful of relay allocations a
 * minute, and after that it stops and reports a cause instead of looping.
 */
export class Call extends Emitter<CallEvents> {
  private readonly signaling: Signaling;
  private readonly makePc: PeerConnectionFactory;
  private readonly clock: Clock;
  private readonly policy: RecoveryPolicy;
  private readonly relayOnly: boolean;
  private readonly connectTimeoutMs: number;
  private readonly disconnectedGraceMs: number;
  private readonly refreshIce: () => Promise<IceConfig>;
  private readonly options: CallOptions;
  private room: JoinedRoom;
  private ice: IceConfig;
  private pc: PeerConnectionLike | null = null;
  private channel: DataChannelLike | null = null;
  private remotePeerId: string | null = null;
  private pendingCandidates: CandidateInit[] = [];
  private currentState: CallState = "waiting";
  private failTimer: unknown = null;
  private retryTimer: unknown = null;
  private iceTimer: unknown = null;
  private candidateErrors: number[] = [];
  private relayCandidateSeen = false;
  private networkChangedFlag = false;
  private signalChain: Promise<void> = Promise.resolve();
  private readonly unsubscribe: Array<() => void> = [];
  /** RTCPeerConnections made and ICE restarts done, for the app's diagnostics and the tests. */
  readonly counters = { peerConnections: 0, iceRestarts: 0 };

  constructor(options: CallOptions) {
    super();
    this.options = options;
    this.signaling = options.signaling;
    const room = this.signaling.joined;
    if (!room) throw new Error("join the room (signaling.join) before making the call");
    this.room = room;
    this.ice = room.ice;
    this.makePc = options.peerConnection ?? platformPeerConnection();
    this.clock = options.clock ?? systemClock;
    this.policy = new RecoveryPolicy({ ...DEFAULT_RECOVERY_LIMITS, ...options.limits });
    this.relayOnly = options.relayOnly ?? true;
    this.connectTimeoutMs = options.connectTimeoutMs ?? 20000;
    this.disconnectedGraceMs = options.disconnectedGraceMs ?? 8000;
    const appointmentId = this.signaling.appointment;
    if (!appointmentId) throw new Error("join the room (signaling.join) before making the call");
    this.refreshIce = options.refreshIce ?? (async () => (await this.signaling.client.consultationSession(appointmentId)).ice);
  }

  get state(): CallState {
    return this.currentState;
  }

  get peerConnection(): PeerConnectionLike | null {
    return this.pc;
  }

  /** Starts: the practitioner calls an admitted patient (now or when one is admitted); the patient waits for the offer. */
  start(): void {
    const s = this.signaling;
    this.unsubscribe.push(
      s.on("signal:offer", (m) => this.inOrder(() => this.onOffer(m.from, m.sdp))),
      s.on("signal:answer", (m) => this.inOrder(() => this.onAnswer(m.from, m.sdp))),
      s.on("signal:candidate", (m) => this.inOrder(() => this.onCandidate(m.from, m.candidate))),
      s.on("room:peer-joined", (p) => this.onPeerPresent(p)),
      s.on("lobby:admitted", (m) => {
        this.room = { ...this.room, state: "admitted", peers: m.peers };
      }),
      s.on("room:peer-left", (m) => this.onPeerLeft(m.peerId, m.reason)),
      s.on("joined", (room) => {
        this.room = room;
        this.useIce(room.ice);
        for (const p of room.peers) this.onPeerPresent(p);
      }),
      s.on("room:ended", () => this.fail(new CallError("consultation-closed"))),
      s.on("closed", (e) => this.fail(new CallError(e instanceof SessionEndedError ? "session-ended" : "consultation-closed", e.message))),
    );
    this.scheduleIceRefresh();
    for (const p of this.room.peers) this.onPeerPresent(p);
  }

  /** Sends on the data channel (when open). */
  send(data: string): void {
    if (!this.channel || this.channel.readyState !== "open") throw new Error("the data channel is not open");
    this.channel.send(data);
  }

  /**
   * The app saw the device change networks (React Native: NetInfo; browsers: `online`): the
   * offerer restarts ICE at once rather than waiting for the old path to time out.
   */
  networkChanged(): void {
    this.networkChangedFlag = true;
    if (this.room.role === "practitioner" && this.pc && this.remotePeerId) {
      this.policy.recordConnected();
      this.onMediaFailure();
    }
  }

  /** Ends the call here (the room stays joined; `signaling.leave()` leaves it). */
  hangup(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    this.closePc();
    this.clearTimer("iceTimer");
    this.clearTimer("retryTimer");
    this.setState("closed");
  }

  // -- peers ---------------------------------------------------------------------------------

  private onPeerPresent(p: RoomPeer): void {
    if (this.currentState === "closed" || this.currentState === "failed") return;
    if (this.room.role !== "practitioner" || p.role !== "patient") return;
    if (this.pc && this.remotePeerId === p.peerId && !this.isDead(this.pc)) return;
    this.remotePeerId = p.peerId;
    this.newConnection();
  }

  private onPeerLeft(peerId: string, reason: string): void {
    // "disconnected": only their signaling dropped; they keep their place for 60 s and the
    // media path may well be intact, so the call stays as it is.
    if (peerId !== this.remotePeerId || reason === "disconnected") return;
    this.closePc();
    this.clearTimer("retryTimer");
    this.remotePeerId = null;
    this.setState("waiting");
    this.emit("failed", new CallError("peer-left"));
  }

  // -- connections ---------------------------------------------------------------------------

  /** The offerer's new RTCPeerConnection, within the budget; beyond it the call fails. */
  private newConnection(): void {
    const peer = this.remotePeerId;
    if (!peer) return;
    if (!this.policy.mayCreate(this.clock.now())) {
      this.giveUp();
      return;
    }
    const pc = this.createPc(peer);
    this.inOrder(() => this.offer(pc, peer, false));
  }

  private createPc(peer: string): PeerConnectionLike {
    this.closePc();
    this.policy.recordCreated(this.clock.now());
    this.counters.peerConnections++;
    this.candidateErrors = [];
    this.relayCandidateSeen = false;
    const pc = this.makePc(this.configuration());
    this.pc = pc;
    this.remotePeerId = peer;
    this.pendingCandidates = [];
    pc.addEventListener("icecandidate", (ev) => {
      if (pc !== this.pc || !ev.candidate || !ev.candidate.candidate) return;
      if (/ typ relay( |$)/.test(ev.candidate.candidate)) this.relayCandidateSeen = true;
      const c = ev.candidate;
      const init: CandidateInit = c.toJSON ? c.toJSON() : { candidate: c.candidate, sdpMid: c.sdpMid ?? null, sdpMLineIndex: c.sdpMLineIndex ?? null };
      this.signaling.candidate(peer, init).catch(() => undefined);
    });
    pc.addEventListener("icecandidateerror", (ev) => {
      if (pc === this.pc && typeof ev.errorCode === "number") this.candidateErrors.push(ev.errorCode);
    });
    const onState = () => {
      if (pc === this.pc) this.onPcState(pc);
    };
    pc.addEventListener("connectionstatechange", onState);
    pc.addEventListener("iceconnectionstatechange", onState);
    pc.addEventListener("track", (ev) => {
      if (pc === this.pc) this.emit("track", ev.track, ev.streams);
    });
    if (this.options.dataChannel) {
      const channel = pc.createDataChannel(this.options.dataChannel.label, { negotiated: true, id: 0 });
      this.channel = channel;
      channel.addEventListener("open", () => {
        if (channel === this.channel) this.emit("channel-open");
      });
      channel.addEventListener("message", (ev) => {
        if (channel === this.channel) this.emit("message", ev.data);
      });
    }
    const local = this.options.localStream;
    if (local) for (const t of local.getTracks()) pc.addTrack(t, local);
    this.armFailTimer(this.connectTimeoutMs);
    this.setState(this.counters.peerConnections > 1 ? "recovering" : "connecting");
    this.emit("peer-connection", pc);
    return pc;
  }

  private async offer(pc: PeerConnectionLike, to: string, iceRestart: boolean): Promise<void> {
    if (pc !== this.pc) return;
    const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : {});
    if (pc !== this.pc) return;
    await pc.setLocalDescription(offer);
    await this.signaling.offer(to, pc.localDescription?.sdp ?? offer.sdp ?? "");
  }

  private async onOffer(from: string, sdp: string): Promise<void> {
    if (this.room.role !== "patient" || this.currentState === "closed" || this.currentState === "failed") return;
    let pc = this.pc;
    // A renegotiation or ICE restart keeps the connection; an offer of a new connection (a new
    // DTLS fingerprint) needs a new one here too, counted against the same budget.
    const same = pc && this.remotePeerId === from && !this.isDead(pc) && (!pc.remoteDescription || fingerprint(pc.remoteDescription.sdp) === fingerprint(sdp));
    if (!pc || !same) {
      if (!this.policy.mayCreate(this.clock.now())) {
        this.giveUp();
        return;
      }
      pc = this.createPc(from);
    } else {
      this.armFailTimer(this.connectTimeoutMs);
    }
    this.clearTimer("retryTimer");
    await pc.setRemoteDescription({ type: "offer", sdp });
    await this.flushCandidates(pc);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this.signaling.answer(from, pc.localDescription?.sdp ?? answer.sdp ?? "");
  }

  private async onAnswer(from: string, sdp: string): Promise<void> {
    const pc = this.pc;
    if (!pc || from !== this.remotePeerId || pc.signalingState !== "have-local-offer") return;
    await pc.setRemoteDescription({ type: "answer", sdp });
    await this.flushCandidates(pc);
    // An ICE restart on a working path may leave the state "connected" throughout: no event.
    if (pc === this.pc && this.isConnected(pc)) this.onPcState(pc);
  }

  private async onCandidate(from: string, candidate: CandidateInit): Promise<void> {
    const pc = this.pc;
    if (!pc || from !== this.remotePeerId || !candidate) return;
    if (!pc.remoteDescription) {
      this.pendingCandidates.push(candidate);
      return;
    }
    await pc.addIceCandidate(candidate).catch(() => undefined);
  }

  private async flushCandidates(pc: PeerConnectionLike): Promise<void> {
    for (const c of this.pendingCandidates.splice(0)) await pc.addIceCandidate(c).catch(() => undefined);
  }

  // -- failure and recovery ------------------------------------------------------------------

  private onPcState(pc: PeerConnectionLike): void {
    const state = pc.connectionState ?? pc.iceConnectionState;
    const ice = pc.iceConnectionState;
    if (this.isConnected(pc)) {
      this.clearTimer("failTimer");
      this.clearTimer("retryTimer");
      this.policy.recordConnected();
      this.networkChangedFlag = false;
      this.setState("connected");
    } else if (state === "failed" || ice === "failed") {
      this.clearTimer("failTimer");
      this.onMediaFailure();
    } else if (state === "disconnected" || ice === "disconnected") {
      this.armFailTimer(this.disconnectedGraceMs);
    }
  }

  private onMediaFailure(): void {
    if (this.currentState === "closed" || this.currentState === "failed") return;
    const peer = this.remotePeerId;
    if (this.room.role !== "practitioner") {
      // The answerer waits for the offerer's restart or new connection; if none comes in
      // time, it gives up on its own.
      this.setState("recovering");
      this.clearTimer("retryTimer");
      this.retryTimer = this.clock.setTimeout(() => this.giveUp(), this.connectTimeoutMs + this.policy.limits.maxBackoffMs);
      return;
    }
    if (!peer) return;
    const step = this.policy.onFailure(this.clock.now(), this.pc !== null);
    this.setState("recovering");
    if (step.action === "ice-restart") {
      const pc = this.pc;
      if (!pc) return;
      this.counters.iceRestarts++;
      this.candidateErrors = [];
      this.relayCandidateSeen = false;
      this.armFailTimer(this.connectTimeoutMs);
      this.inOrder(async () => {
        await this.refreshIceIfDue();
        await this.offer(pc, peer, true);
      });
    } else if (step.action === "new-connection") {
      this.clearTimer("retryTimer");
      this.retryTimer = this.clock.setTimeout(() => {
        this.retryTimer = null;
        void this.refreshIceIfDue().then(() => this.newConnection());
      }, step.delayMs);
    } else {
      this.giveUp();
    }
  }

  private giveUp(): void {
    const cause: CallFailureCause = diagnose({
      now: this.clock.now(),
      credentialsExpireAt: Date.parse(this.ice.expiresAt),
      candidateErrorCodes: this.candidateErrors,
      relayCandidateSeen: this.relayCandidateSeen,
      peerPresent: this.remotePeerId !== null,
      networkChanged: this.networkChangedFlag,
    });
    const made = this.policy.createdInLastMinute(this.clock.now());
    this.fail(new CallError(cause, `${made} connection attempts in the last minute; stopped`));
  }

  /** The final failure: everything stops, and the cause is reported once. */
  private fail(error: CallError): void {
    if (this.currentState === "closed" || this.currentState === "failed") return;
    for (const off of this.unsubscribe.splice(0)) off();
    this.closePc();
    this.clearTimer("retryTimer");
    this.clearTimer("iceTimer");
    this.setState("failed");
    this.emit("failed", error);
  }

  private armFailTimer(ms: number): void {
    this.clearTimer("failTimer");
    const pc = this.pc;
    this.failTimer = this.clock.setTimeout(() => {
      this.failTimer = null;
      if (pc !== this.pc) return;
      if (pc && this.isConnected(pc)) this.onPcState(pc);
      else this.onMediaFailure();
    }, ms);
  }

  // -- relay credentials ---------------------------------------------------------------------

  private configuration(): RtcConfiguration {
    return {
      iceServers: this.ice.iceServers.map((s) => ({
        urls: s.urls,
        ...(s.username ? { username: s.username } : {}),
        ...(s.credential ? { credential: s.credential } : {}),
      })),
      iceTransportPolicy: this.relayOnly ? "relay" : "all",
    };
  }

  private useIce(ice: IceConfig): void {
    this.ice = ice;
    try {
      this.pc?.setConfiguration(this.configuration());
    } catch {
      /* keep the credentials the connection has */
    }
    this.scheduleIceRefresh();
  }

  /** Fetches new credentials at `refreshAfter` (and retries a minute later if that fails). */
  private scheduleIceRefresh(): void {
    this.clearTimer("iceTimer");
    const due = Math.max(0, Date.parse(this.ice.refreshAfter) - this.clock.now());
    this.iceTimer = this.clock.setTimeout(() => {
      this.iceTimer = null;
      this.refreshIce().then(
        (ice) => this.useIce(ice),
        (e: unknown) => {
          if (e instanceof ApiError && (e.status === 403 || e.status === 409)) return; // the window closed
          this.iceTimer = this.clock.setTimeout(() => this.scheduleIceRefresh(), 60000);
        },
      );
    }, due);
  }

  private async refreshIceIfDue(): Promise<void> {
    if (this.clock.now() < Date.parse(this.ice.refreshAfter)) return;
    try {
      this.useIce(await this.refreshIce());
    } catch {
      /* diagnose() reports expired credentials if it comes to that */
    }
  }

  // -- helpers -------------------------------------------------------------------------------

  private isConnected(pc: PeerConnectionLike): boolean {
    const ice = pc.iceConnectionState;
    return pc.connectionState === "connected" || ice === "connected" || ice === "completed";
  }

  private isDead(pc: PeerConnectionLike): boolean {
    const s = pc.connectionState ?? pc.iceConnectionState;
    return s === "failed" || s === "closed";
  }

  private closePc(): void {
    this.clearTimer("failTimer");
    const pc = this.pc;
    this.pc = null;
    this.channel?.close();
    this.channel = null;
    pc?.close();
  }

  private clearTimer(which: "failTimer" | "retryTimer" | "iceTimer"): void {
    if (this[which] !== null) this.clock.clearTimeout(this[which]);
    this[which] = null;
  }

  private setState(state: CallState): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state);
  }

  private inOrder(step: () => Promise<void>): void {
    this.signalChain = this.signalChain.then(step).catch((e: unknown) => {
      if (e instanceof SignalingError && e.code === "session-ended") this.fail(new CallError("session-ended"));
    });
  }
}

/**
 * The camera and microphone, with a refusal turned into `permission-denied` (a plain message
 * and the way forward) instead of an exception the app must decode.
 */
export async function openLocalMedia(
  getUserMedia: (constraints: { audio: boolean; video: boolean }) => Promise<MediaStreamLike>,
  constraints: { audio: boolean; video: boolean } = { audio: true, video: true },
): Promise<MediaStreamLike> {
  try {
    return await getUserMedia(constraints);
  } catch (e) {
    const name = (e as { name?: string })?.name ?? "";
    if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") throw new CallError("permission-denied", name);
    throw e;
  }
}
