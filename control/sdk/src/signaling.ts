import { io as socketIo, type Socket } from "socket.io-client";
import type { TeletipClient } from "./client.js";
import { SessionEndedError, SignalingError, type SignalingErrorCode } from "./errors.js";
import { Emitter } from "./events.js";
import type { IceConfig } from "./types.js";

export type RoomRole = "patient" | "practitioner";

export interface RoomPeer {
  peerId: string;
  role: RoomRole;
}

/** The `room:join` answer (docs/signaling.md). */
export interface JoinedRoom {
  peerId: string;
  role: RoomRole;
  state: "waiting" | "admitted";
  peers: RoomPeer[];
  waiting: RoomPeer[];
  ice: IceConfig;
  closesAt: string;
}

/**
 * The practitioner's presence as a waiting patient sees it (`practitioner:status`): `offline`
 * not connected, `online` connected and not in a call, `busy` in a call with another patient,
 * `here` in this consultation's room, about to let the patient in.
 */
export type PractitionerPresence = "offline" | "online" | "busy" | "here";

export interface SessionDescriptionMessage {
  from: string;
  sdp: string;
}

export interface CandidateInit {
  candidate: string;
  sdpMid?: string | null;
  sdpMLineIndex?: number | null;
  usernameFragment?: string | null;
}

export type SignalingEvents = {
  /** Joined (or joined again after a reconnect: `resumed` true, same peer id). */
  joined: (room: JoinedRoom, resumed: boolean) => void;
  "lobby:waiting": (m: { peerId: string }) => void;
  "lobby:patient-arrived": (m: RoomPeer) => void;
  "lobby:admitted": (m: { peerId: string; peers: RoomPeer[] }) => void;
  "lobby:denied": (m: { peerId: string }) => void;
  "room:peer-joined": (m: RoomPeer) => void;
  "room:peer-left": (m: { peerId: string; reason: string }) => void;
  "signal:offer": (m: SessionDescriptionMessage) => void;
  "signal:answer": (m: SessionDescriptionMessage) => void;
  "signal:candidate": (m: { from: string; candidate: CandidateInit }) => void;
  "media:state": (m: { from: string; audio: boolean; video: boolean }) => void;
  "session:expiring": (m: { closesAt: string }) => void;
  "room:ended": (m: { reason: string }) => void;
  /** To a waiting patient: their practitioner's presence, on joining and on each change. */
  "practitioner:status": (m: { status: PractitionerPresence }) => void;
  /** Connected to the server (true) or lost it (false); a lost connection is retried. */
  connection: (connected: boolean) => void;
  /** Signaling stopped for good: the session ended or the server refuses this login. */
  closed: (error: SignalingError | SessionEndedError) => void;
  /** The practitioner's waiting list changed (see `waiting`). */
  waiting: (peers: readonly RoomPeer[]) => void;
};

type Ack<T> = { ok: true; data?: T } | { ok: false; error: { code: SignalingErrorCode; message: string } };

/** How socket.io-client's `io` is called; injectable for a bundler's own copy. */
export type IoFactory = (url: string, options: Record<string, unknown>) => Socket;

export interface SignalingOptions {
  client: TeletipClient;
  io?: IoFactory;
  /** How long an acknowledgement may take (default 10 s). */
  ackTimeoutMs?: number;
  /** Socket.IO transports; default lets socket.io-client choose (React Native: pass ["websocket"]). */
  transports?: string[];
}

const FORWARDED = [
  "lobby:waiting",
  "lobby:patient-arrived",
  "lobby:admitted",
  "lobby:denied",
  "room:peer-joined",
  "room:peer-left",
  "signal:offer",
  "signal:answer",
  "signal:candidate",
  "media:state",
  "session:expiring",
  "room:ended",
  "practitioner:status",
] as const;

/**
 * The `/rtc` signaling connection: authenticates with the client's access token on every
 * (re)connection, renews it (`auth:renew`) when the client refreshes, rejoins the room with
 * `resume: true` after a reconnect, and stops (event `closed`) instead of retrying when the server
 * says the session is over or keeps refusing the token.
 */
export class Signaling extends Emitter<SignalingEvents> {
  private readonly socket: Socket;
  readonly client: TeletipClient;
  private readonly ackTimeoutMs: number;
  private appointmentId: string | null = null;
  private room: JoinedRoom | null = null;
  private refusedInARow = 0;
  private lobby: RoomPeer[] = [];
  private presence: PractitionerPresence | null = null;
  /** Arrivals announced while a room:join was unanswered (null: no join in flight). */
  private arrivedDuringJoin: RoomPeer[] | null = null;
  private expiredByServer = false;
  private stopped = false;
  private readonly unsubscribe: Array<() => void> = [];

  constructor(options: SignalingOptions) {
    super();
    this.client = options.client;
    this.ackTimeoutMs = options.ackTimeoutMs ?? 10000;
    const io = options.io ?? (socketIo as unknown as IoFactory);
    this.socket = io(`${this.client.baseUrl}/rtc`, {
      autoConnect: false,
      // Every (re)connection carries the current access token.
      auth: (cb: (auth: { token: string | null }) => void) => cb({ token: this.client.auth.token }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 5000,
      ...(options.transports ? { transports: options.transports } : {}),
    });
    this.socket.on("connect", () => {
      this.refusedInARow = 0;
      this.emit("connection", true);
      // A reconnect after a join: take the place back. (The first join is join()'s own.)
      if (this.appointmentId && this.room) void this.rejoin();
    });
    this.socket.on("connect_error", (err: Error) => void this.onConnectError(err));
    this.socket.on("disconnect", (reason: string) => {
      this.emit("connection", false);
      if (this.stopped) return;
      if (reason === "io server disconnect") {
        // The server closed us: an expired token (reconnect with a fresh one) or a replaced
        // connection (another device joined as the same user; do not fight it).
        if (this.expiredByServer) {
          this.expiredByServer = false;
          this.client.auth.refresh().then(
            () => this.socket.connect(),
            () => undefined,
          );
        } else {
          this.close(new SignalingError("session-ended", "The consultation server closed this connection (perhaps you joined from another device)."));
        }
      }
    });
    this.socket.on("auth:expired", () => {
      this.expiredByServer = true;
    });
    this.socket.on("session:ended", (m: { reason?: string }) => {
      this.close(new SessionEndedError("server-ended", m?.reason));
    });
    for (const event of FORWARDED) {
      this.socket.on(event, (payload: unknown) => (this.emit as (e: string, p: unknown) => void)(event, payload));
    }
    // The practitioner's waiting list, kept here so every app gets the join race right.
    this.on("lobby:patient-arrived", (p) => {
      this.arrivedDuringJoin?.push(p);
      if (!this.lobby.some((x) => x.peerId === p.peerId)) this.setLobby([...this.lobby, { peerId: p.peerId, role: p.role }]);
    });
    this.on("practitioner:status", (m) => {
      this.presence = m.status;
    });
    this.on("room:peer-joined", (p) => this.dropFromLobby(p.peerId));
    this.on("room:peer-left", (m) => this.dropFromLobby(m.peerId));
    this.unsubscribe.push(this.client.auth.on("tokens", (token) => this.renew(token)));
    this.unsubscribe.push(this.client.auth.on("session-ended", (e) => this.close(e)));
  }

  /** The latest `practitioner:status` (a waiting patient's; null before the first). */
  get practitionerStatus(): PractitionerPresence | null {
    return this.presence;
  }

  get connected(): boolean {
    return this.socket.connected;
  }

  /** The current Socket.IO connection's id (a renewal keeps it; a reconnect changes it). */
  get connectionId(): string | null {
    return this.socket.id ?? null;
  }

  /** The appointment whose room this connection joins (and rejoins after a reconnect). */
  get appointment(): string | null {
    return this.appointmentId;
  }

  /**
   * The patients waiting in the lobby, for the practitioner: the join answer's list, plus the
   * arrivals announced while that answer was on its way (the server may announce a newcomer
   * before it answers the join; the older list must not hide them), minus those admitted,
   * denied or gone. Event `waiting` on every change.
   */
  get waiting(): readonly RoomPeer[] {
    return this.lobby;
  }

  /** The latest join answer (after a resume, the resumed one). */
  get joined(): JoinedRoom | null {
    return this.room;
  }

  /** Connects (with a valid token); resolves once connected. */
  async connect(): Promise<void> {
    await this.client.accessToken();
    if (this.socket.connected) return;
    await new Promise<void>((resolve, reject) => {
      const ok = () => {
        offClosed();
        this.socket.off("connect", ok);
        resolve();
      };
      const offClosed = this.on("closed", (e) => {
        this.socket.off("connect", ok);
        reject(e);
      });
      this.socket.on("connect", ok);
      this.socket.connect();
    });
  }

  /** Joins the appointment's room (always `resume: true`: it keeps a place held for 60 s). */
  async join(appointmentId: string): Promise<JoinedRoom> {
    this.appointmentId = appointmentId;
    if (!this.socket.connected) await this.connect();
    const room = await this.joinCall(appointmentId);
    this.room = room;
    this.emit("joined", room, false);
    return room;
  }

  /** room:join, with the waiting list merged from the answer and the arrivals meanwhile. */
  private async joinCall(appointmentId: string): Promise<JoinedRoom> {
    this.arrivedDuringJoin = [];
    try {
      const room = await this.call<JoinedRoom>("room:join", { appointmentId, resume: true });
      const merged = room.waiting.map((p) => ({ peerId: p.peerId, role: p.role }));
      for (const p of this.arrivedDuringJoin) if (!merged.some((m) => m.peerId === p.peerId)) merged.push(p);
      this.setLobby(merged);
      return room;
    } finally {
      this.arrivedDuringJoin = null;
    }
  }

  private setLobby(peers: RoomPeer[]): void {
    this.lobby = peers;
    this.emit("waiting", peers);
  }

  private dropFromLobby(peerId: string): void {
    if (this.lobby.some((x) => x.peerId === peerId)) this.setLobby(this.lobby.filter((x) => x.peerId !== peerId));
  }

  private async rejoin(): Promise<void> {
    if (!this.appointmentId) return;
    try {
      const room = await this.joinCall(this.appointmentId);
      this.room = room;
      this.emit("joined", room, true);
    } catch (e) {
      if (e instanceof SignalingError && e.code !== "timeout") this.close(e);
    }
  }

  leave(): Promise<void> {
    this.appointmentId = null;
    this.room = null;
    return this.call("room:leave", {});
  }

  async admit(peerId: string): Promise<{ peerId: string }> {
    const r = await this.call<{ peerId: string }>("lobby:admit", { peerId });
    this.dropFromLobby(peerId);
    return r;
  }

  async deny(peerId: string): Promise<{ peerId: string }> {
    const r = await this.call<{ peerId: string }>("lobby:deny", { peerId });
    this.dropFromLobby(peerId);
    return r;
  }

  /** The practitioner ends the consultation for everyone (the appointment becomes fulfilled). */
  end(): Promise<void> {
    return this.call("room:end", {});
  }

  offer(to: string, sdp: string): Promise<void> {
    return this.call("signal:offer", { to, sdp });
  }

  answer(to: string, sdp: string): Promise<void> {
    return this.call("signal:answer", { to, sdp });
  }

  candidate(to: string, candidate: CandidateInit): Promise<void> {
    return this.call("signal:candidate", { to, candidate });
  }

  mediaState(audio: boolean, video: boolean): Promise<void> {
    return this.call("media:state", { audio, video });
  }

  /** Emits and resolves with the acknowledgement's data; a refusal becomes a SignalingError. */
  async call<T>(event: string, payload: unknown): Promise<T> {
    if (!this.socket.connected) throw new SignalingError("not-connected", "Not connected to the consultation server.");
    let ack: Ack<T>;
    try {
      ack = (await this.socket.timeout(this.ackTimeoutMs).emitWithAck(event, payload)) as Ack<T>;
    } catch {
      throw new SignalingError("timeout", `The consultation server did not answer ${event}.`);
    }
    if (!ack || ack.ok !== true) {
      const error = ack && !ack.ok ? ack.error : { code: "internal" as const, message: "malformed answer" };
      if (error.code === "session-ended") this.close(new SessionEndedError("server-ended", error.message));
      throw new SignalingError(error.code, error.message);
    }
    return ack.data as T;
  }

  /** Closes the connection for good (also on logout). */
  close(reason?: SignalingError | SessionEndedError): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const off of this.unsubscribe.splice(0)) off();
    this.socket.close();
    if (reason) this.emit("closed", reason);
  }

  private renew(token: string): void {
    if (!this.socket.connected) return;
    this.socket.timeout(this.ackTimeoutMs).emit("auth:renew", { token }, () => undefined);
  }

  private async onConnectError(err: Error): Promise<void> {
    const msg = err?.message ?? "";
    if (msg.startsWith("token refused")) {
      // Most likely an expired token: one refresh, then reconnect; a token refused right
      // after a refresh means the server will not take this login.
      if (++this.refusedInARow > 2) {
        this.close(new SignalingError("token-refused", `The consultation server refuses this login (${msg}). Please log in again.`));
        return;
      }
      try {
        await this.client.auth.refresh();
        if (!this.stopped) this.socket.connect();
      } catch (e) {
        if (e instanceof SessionEndedError) this.close(e);
      }
    } else if (msg.startsWith("session ended") || msg.startsWith("account disabled") || msg.startsWith("token required")) {
      this.close(new SessionEndedError("signaling-refused", msg));
    }
    // Anything else (network) is retried by socket.io-client with its capped backoff.
  }
}
