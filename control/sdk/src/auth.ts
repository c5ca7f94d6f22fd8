import type { Clock } from "./clock.js";
import { ApiError, SessionEndedError } from "./errors.js";
import { Emitter } from "./events.js";
import type { TokenResponse, User } from "./types.js";

/** What is kept of a login between app starts (React Native: the keychain; browsers: memory). */
export interface StoredTokens {
  refreshToken: string;
  user: User;
}

/** Where the refresh token lives. Sync or async, so both localStorage-like and keychain APIs fit. */
export interface TokenStorage {
  load(): StoredTokens | null | Promise<StoredTokens | null>;
  save(tokens: StoredTokens): void | Promise<void>;
  clear(): void | Promise<void>;
}

export type AuthEvents = {
  /** A new access token (after login or a refresh): the signaling connection renews with it. */
  tokens: (accessToken: string) => void;
  /** The session is over; show the login screen. */
  "session-ended": (error: SessionEndedError) => void;
};

/**
 * When to refresh an access token that lives `expiresInSeconds`: at 75 % of its lifetime, but at
 * most a minute before it expires, and never sooner than a second from now.
 */
export function refreshDelayMs(expiresInSeconds: number): number {
  const lead = Math.min(60, expiresInSeconds * 0.25);
  return Math.max(1, expiresInSeconds - lead) * 1000;
}

/**
 * The login session's tokens: keeps the access token fresh before it expires (one refresh at a
 * time, however many callers ask), stores the refresh token first (control-api.md §3: a refresh
 * token is single use), and ends the session once when the server refuses a refresh.
 */
export class TokenKeeper extends Emitter<AuthEvents> {
  private accessToken: string | null = null;
  private refreshToken: string | null = null;
  private currentUser: User | null = null;
  private timer: unknown = null;
  private inFlight: Promise<string> | null = null;

  constructor(
    private readonly clock: Clock,
    private readonly storage: TokenStorage | null,
    private readonly refreshCall: (refreshToken: string) => Promise<TokenResponse>,
  ) {
    super();
  }

  get user(): User | null {
    return this.currentUser;
  }

  get token(): string | null {
    return this.accessToken;
  }

  /** Takes a login or refresh answer. */
  async accept(t: TokenResponse): Promise<void> {
    this.refreshToken = t.refreshToken;
    this.currentUser = t.user;
    if (this.storage) await this.storage.save({ refreshToken: t.refreshToken, user: t.user });
    this.accessToken = t.accessToken;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      // A failure is reported through "session-ended" or retried by the next authorized call.
      this.refresh().catch(() => undefined);
    }, refreshDelayMs(t.expiresIn));
    this.emit("tokens", t.accessToken);
  }

  /** Restores a stored session (app start): one refresh with the stored refresh token. */
  async restore(): Promise<User | null> {
    const stored = this.storage ? await this.storage.load() : null;
    if (!stored) return null;
    this.refreshToken = stored.refreshToken;
    this.currentUser = stored.user;
    await this.refresh();
    return this.currentUser;
  }

  /** A fresh access token; concurrent callers share one refresh. */
  refresh(): Promise<string> {
    if (this.inFlight) return this.inFlight;
    const spent = this.refreshToken;
    this.inFlight = (async () => {
      try {
        if (!spent) throw new SessionEndedError("refresh-refused", "not logged in");
        const t = await this.refreshCall(spent);
        await this.accept(t);
        return t.accessToken;
      } catch (e) {
        if (e instanceof ApiError && e.status === 401) {
          const ended = new SessionEndedError("refresh-refused", e.detail ?? undefined);
          await this.end(ended);
          throw ended;
        }
        throw e;
      } finally {
        this.inFlight = null;
      }
    })();
    return this.inFlight;
  }

  /** Forgets everything; announces `session-ended` once, if there was a session. */
  async end(reason: SessionEndedError | null): Promise<void> {
    const had = this.refreshToken !== null || this.accessToken !== null;
    if (this.timer !== null) this.clock.clearTimeout(this.timer);
    this.timer = null;
    this.accessToken = null;
    this.refreshToken = null;
    this.currentUser = null;
    if (this.storage) await this.storage.clear();
    if (had && reason) this.emit("session-ended", reason);
  }
}
