/** Every error the SDK throws or reports is a TeletipError, with a plain message. */
export class TeletipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A field the server refused, from a validation problem. */
export interface FieldError {
  field: string;
  message: string;
}

/** An RFC 9457 problem document as teletip-control sends it (docs/control-api.md §8). */
export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail?: string | null;
  requestId?: string | null;
  errors?: FieldError[];
}

/**
 * An HTTP answer with an error status. `type` is the problem type (`/problems/validation`),
 * `kind` its last segment (`validation`) to branch on; `requestId` is what support asks for.
 */
export class ApiError extends TeletipError {
  readonly type: string;
  readonly kind: string;
  readonly status: number;
  readonly title: string;
  readonly detail: string | null;
  readonly requestId: string | null;
  readonly fieldErrors: readonly FieldError[];

  constructor(problem: ProblemDocument) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.type = problem.type;
    this.kind = problem.type.slice(problem.type.lastIndexOf("/") + 1);
    this.status = problem.status;
    this.title = problem.title;
    this.detail = problem.detail ?? null;
    this.requestId = problem.requestId ?? null;
    this.fieldErrors = problem.errors ?? [];
  }
}

/** The server could not be reached at all (no HTTP answer). */
export class NetworkError extends TeletipError {
  constructor(
    message: string,
    readonly underlying: unknown,
  ) {
    super(message);
  }
}

/** Why a login session is over; the way forward is always to log in again. */
export type SessionEndReason = "refresh-refused" | "logged-out" | "signaling-refused" | "server-ended";

export class SessionEndedError extends TeletipError {
  constructor(
    readonly reason: SessionEndReason,
    detail?: string,
  ) {
    super(`Your session has ended${detail ? ` (${detail})` : ""}. Please log in again.`);
  }
}

/** The error codes of `/rtc` acknowledgements (docs/signaling.md), plus the client's own. */
export type SignalingErrorCode =
  | "invalid"
  | "not-found"
  | "forbidden"
  | "closed"
  | "conflict"
  | "consent-required"
  | "not-joined"
  | "session-ended"
  | "internal"
  | "timeout"
  | "not-connected"
  | "token-refused";

export class SignalingError extends TeletipError {
  constructor(
    readonly code: SignalingErrorCode,
    message: string,
  ) {
    super(message);
  }
}
