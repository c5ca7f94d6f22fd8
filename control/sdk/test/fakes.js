// Fakes for the SDK's own logic (timing, budget, parsing): a clock the test advances, a fetch
// that answers from a script, and a WebRTC connection whose media path never comes up.

/** A clock whose time moves only when the test says so; timers run in order of due time. */
export class FakeClock {
  constructor(start = Date.parse("2026-12-07T10:00:00Z")) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
  }

  now() {
    return this.t;
  }

  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** Moves time forward by `ms`, running each timer due on the way (and what it awaits). */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await flush();
      let next = null;
      for (const [id, timer] of this.timers) if (timer.at <= end && (!next || timer.at < next[1].at)) next = [id, timer];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
    }
    this.t = end;
    await flush();
  }

  pending() {
    return [...this.timers.values()].map((t) => t.at - this.t).sort((a, b) => a - b);
  }
}

export async function flush() {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

/** A fetch answering each request with the next scripted answer; records what it was asked. */
export function scriptedFetch(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, ...init, body: init.body === undefined ? undefined : JSON.parse(init.body) });
    const next = answers.shift();
    if (!next) throw new Error(`unexpected request ${init.method} ${url}`);
    if (next instanceof Error) throw next;
    const { status = 200, body, headers = {} } = typeof next === "function" ? next(url, init) : next;
    const text = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
    return {
      status,
      ok: status >= 200 && status < 300,
      headers: { get: (name) => headers[name.toLowerCase()] ?? null },
      text: async () => text,
    };
  };
  return { fetch, calls };
}

export function tokenAnswer(n, expiresIn = 600) {
  return {
    body: {
      accessToken: `access-${n}`,
      tokenType: "Bearer",
      expiresIn,
      refreshToken: `refresh-${n}`,
      sessionExpiresAt: "2026-12-07T22:00:00Z",
      user: { id: "u1", email: "a@b.c", displayName: "A", role: "patient", disabled: false, createdAt: "2026-12-01T00:00:00Z" },
    },
  };
}

/** An RTCPeerConnection whose ICE never connects: it gathers a relayed candidate, then fails when told. */
export class FailingPeerConnection {
  static made = [];

  constructor(config) {
    this.config = config;
    this.listeners = {};
    this.connectionState = "new";
    this.iceConnectionState = "new";
    this.signalingState = "stable";
    this.localDescription = null;
    this.remoteDescription = null;
    this.offers = [];
    FailingPeerConnection.made.push(this);
  }

  addEventListener(type, fn) {
    (this.listeners[type] ||= []).push(fn);
  }

  fire(type, ev = {}) {
    for (const fn of this.listeners[type] || []) fn(ev);
  }

  async createOffer(options = {}) {
    this.offers.push(options);
    return { type: "offer", sdp: `v=0\r\na=fingerprint:sha-256 ${FailingPeerConnection.made.indexOf(this)}\r\n` };
  }

  async createAnswer() {
    return { type: "answer", sdp: "v=0\r\n" };
  }

  async setLocalDescription(d) {
    this.localDescription = d;
    this.signalingState = d.type === "offer" ? "have-local-offer" : "stable";
    this.fire("icecandidate", { candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 61000 typ relay raddr 0.0.0.0 rport 0", sdpMid: "0", sdpMLineIndex: 0 } });
  }

  async setRemoteDescription(d) {
    this.remoteDescription = d;
    this.signalingState = "stable";
  }

  async addIceCandidate() {}

  createDataChannel() {
    return { readyState: "connecting", send() {}, close() {}, addEventListener() {} };
  }

  addTrack() {}

  setConfiguration(c) {
    this.config = c;
  }

  close() {
    this.connectionState = "closed";
  }

  /** The media path failed. */
  failNow() {
    this.connectionState = "failed";
    this.iceConnectionState = "failed";
    this.fire("connectionstatechange");
  }
}
