// The HTTP API's shapes, written by hand from docs/openapi.json (tests/sdk/openapi.test.js
// checks that every field named here exists there with the same requiredness).

export type Role = "admin" | "practitioner" | "patient";

export interface User {
  id: string;
  email: string;
  displayName: string;
  role: Role;
  disabled: boolean;
  createdAt: string;
}

export interface TokenResponse {
  accessToken: string;
  tokenType: string;
  /** Seconds until the access token expires. */
  expiresIn: number;
  refreshToken: string;
  sessionExpiresAt: string;
  user: User;
  /**
   * True when the account's role requires a second factor it has not enrolled
   * (`auth.mfa-required-roles`): the session may only enroll one (`/v1/auth/mfa/…`), log out
   * and read `/v1/me` until then.
   */
  mfaEnrollmentRequired: boolean;
}

export type AppointmentStatus =
  | "proposed"
  | "pending"
  | "booked"
  | "arrived"
  | "checked-in"
  | "fulfilled"
  | "cancelled"
  | "noshow"
  | "entered-in-error";

export interface Appointment {
  id: string;
  practitionerId: string;
  patientId: string;
  start: string;
  end: string;
  status: AppointmentStatus;
  cancelReason?: string | null;
}

export interface AppointmentQuery {
  practitioner?: string;
  patient?: string;
  status?: AppointmentStatus;
  from?: string;
  to?: string;
  limit?: number;
}

export interface BookAppointment {
  practitionerId: string;
  patientId: string;
  start: string;
  end: string;
  /**
   * Staff only: `proposed` (awaiting the patient's `confirm`) or `pending` (awaiting the
   * practitioner's or an admin's `confirm`); default `booked`.
   */
  status?: "proposed" | "pending" | "booked";
}

export type AppointmentAction = "confirm" | "cancel" | "reschedule" | "arrive" | "check-in" | "complete" | "no-show" | "entered-in-error";

export interface StatusChange {
  reason?: string | null;
  start?: string | null;
  end?: string | null;
}

export type ConsentDecision = "given" | "withdrawn";

export interface Consent {
  id: string;
  noticeVersion: string;
  purpose: string;
  decision: ConsentDecision;
  at: string;
}

export interface ConsentState {
  currentNoticeVersion?: string | null;
  missingRequired: string[];
  current: Consent[];
  history: Consent[];
}

export interface RecordConsent {
  noticeVersion: string;
  purpose: string;
  decision: ConsentDecision;
}

export interface NoticePurpose {
  code: string;
  required: boolean;
  description: string;
}

export interface PrivacyNotice {
  version: string;
  language: string;
  title: string;
  body: string;
  purposes: NoticePurpose[];
  publishedAt: string;
}

export interface IceServer {
  urls: string[];
  username?: string | null;
  credential?: string | null;
}

/** Relay credentials, shaped like an RTCConfiguration plus their lifetimes. */
export interface IceConfig {
  iceServers: IceServer[];
  iceTransportPolicy?: string | null;
  ttl: number;
  expiresAt: string;
  refreshAfter: string;
}

export interface IceRequest {
  ttl?: number;
  relayOnly?: boolean;
}

/** `GET /v1/consultations/join-window`: how wide every consultation's join window is. */
export interface JoinWindowRule {
  /** The consultation opens this many minutes before the appointment starts… */
  beforeMinutes: number;
  /** …and closes this many minutes after it ends. */
  afterMinutes: number;
}

export interface ConsultationSession {
  appointmentId: string;
  role: string;
  signaling: { namespace: string; room: string };
  ice: IceConfig;
  opensAt: string;
  closesAt: string;
}
