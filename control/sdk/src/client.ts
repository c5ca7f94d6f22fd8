import { TokenKeeper, type TokenStorage } from "./auth.js";
import { systemClock, type Clock } from "./clock.js";
import { ApiError, SessionEndedError } from "./errors.js";
import { platformFetch, requestJson, type FetchLike } from "./http.js";
import type {
  Appointment,
  AppointmentAction,
  AppointmentQuery,
  BookAppointment,
  Consent,
  ConsentState,
  ConsultationSession,
  IceConfig,
  IceRequest,
  JoinWindowRule,
  PrivacyNotice,
  RecordConsent,
  StatusChange,
  TokenResponse,
  User,
} from "./types.js";

export interface ClientOptions {
  /** The control plane's origin, e.g. `https://control.hospital.example` (no trailing slash). */
  baseUrl: string;
  fetch?: FetchLike;
  clock?: Clock;
  /** Keeps the refresh token across app starts; without it the login lives in memory only. */
  storage?: TokenStorage;
}

/**
 * The control plane's HTTP API for a signed-in person: login and refresh, appointments,
 * consents, and the consultation session with its relay credentials.
 */
export class TeletipClient {
  readonly baseUrl: string;
  readonly clock: Clock;
  readonly auth: TokenKeeper;
  private readonly fetch: FetchLike;
  private enrollmentRequired = false;

  constructor(options: ClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.fetch = options.fetch ?? platformFetch();
    this.clock = options.clock ?? systemClock;
    this.auth = new TokenKeeper(this.clock, options.storage ?? null, (refreshToken) =>
      requestJson<TokenResponse>(this.fetch, this.baseUrl, "POST", "/v1/auth/refresh", { body: { refreshToken } }),
    );
  }

  get user(): User | null {
    return this.auth.user;
  }

  /**
   * The last login's `mfaEnrollmentRequired`: this session may only enroll a second factor
   * (`/v1/auth/mfa/…`), read `/v1/me` and log out until it does.
   */
  get mfaEnrollmentRequired(): boolean {
    return this.enrollmentRequired;
  }

  /** Marks the enrollment done (after `POST /v1/auth/mfa/confirm` succeeded). */
  mfaEnrolled(): void {
    this.enrollmentRequired = false;
  }

  /**
   * Logs in. An account with two-factor authentication on needs `second.otp` (the
   * authenticator's current code) or `second.recoveryCode`; without one the server answers
   * `401 mfa-required` (an `ApiError` whose `type` ends in `mfa-required`).
   */
  async login(email: string, password: string, second?: { otp?: string; recoveryCode?: string }): Promise<User> {
    const body: Record<string, string> = { email, password };
    if (second?.otp !== undefined) body.otp = second.otp;
    if (second?.recoveryCode !== undefined) body.recoveryCode = second.recoveryCode;
    const t = await requestJson<TokenResponse>(this.fetch, this.baseUrl, "POST", "/v1/auth/login", { body });
    await this.auth.accept(t);
    this.enrollmentRequired = t.mfaEnrollmentRequired === true;
    return t.user;
  }

  /** Ends the session on the server (which also ends its signaling connections and relay credentials). */
  async logout(): Promise<void> {
    const token = this.auth.token;
    await this.auth.end(new SessionEndedError("logged-out"));
    if (token) {
      await requestJson<void>(this.fetch, this.baseUrl, "POST", "/v1/auth/logout", { token }).catch(() => undefined);
    }
  }

  /** A valid access token (refreshed if there is none yet), e.g. for the signaling handshake. */
  async accessToken(): Promise<string> {
    return this.auth.token ?? (await this.auth.refresh());
  }

  /** An authenticated request; on `401` one refresh and one retry, then the session is over. */
  async request<T>(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<T> {
    const token = await this.accessToken();
    const options = { token, ...(body === undefined ? {} : { body }), ...(headers ? { headers } : {}) };
    try {
      return await requestJson<T>(this.fetch, this.baseUrl, method, path, options);
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) throw e;
      const fresh = await this.auth.refresh();
      return requestJson<T>(this.fetch, this.baseUrl, method, path, { ...options, token: fresh });
    }
  }

  me(): Promise<User> {
    return this.request("GET", "/v1/me");
  }

  listAppointments(query: AppointmentQuery = {}): Promise<Appointment[]> {
    const params = Object.entries(query)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join("&");
    return this.request("GET", `/v1/appointments${params ? `?${params}` : ""}`);
  }

  getAppointment(id: string): Promise<Appointment> {
    return this.request("GET", `/v1/appointments/${encodeURIComponent(id)}`);
  }

  /** Books; an `idempotencyKey` makes a retried booking answer the first one instead of a conflict. */
  bookAppointment(input: BookAppointment, idempotencyKey?: string): Promise<Appointment> {
    return this.request("POST", "/v1/appointments", input, idempotencyKey ? { "idempotency-key": idempotencyKey } : undefined);
  }

  changeAppointment(id: string, action: AppointmentAction, change: StatusChange = {}): Promise<Appointment> {
    return this.request("POST", `/v1/appointments/${encodeURIComponent(id)}/${action}`, change);
  }

  currentPrivacyNotice(): Promise<PrivacyNotice> {
    return requestJson(this.fetch, this.baseUrl, "GET", "/v1/privacy-notices/current");
  }

  consents(): Promise<ConsentState> {
    return this.request("GET", "/v1/me/consents");
  }

  recordConsent(decision: RecordConsent): Promise<Consent> {
    return this.request("POST", "/v1/me/consents", decision);
  }

  /** What a participant needs to join the video consultation (inside the join window only). */
  consultationSession(appointmentId: string): Promise<ConsultationSession> {
    return this.request("POST", `/v1/appointments/${encodeURIComponent(appointmentId)}/session`);
  }

  /** How wide every consultation's join window is (the server's configuration). */
  joinWindow(): Promise<JoinWindowRule> {
    return this.request("GET", "/v1/consultations/join-window");
  }

  iceCredentials(request: IceRequest = {}): Promise<IceConfig> {
    return this.request("POST", "/v1/ice/credentials", request);
  }
}
