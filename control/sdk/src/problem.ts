import { ApiError, type FieldError, type ProblemDocument } from "./errors.js";

/**
 * The problem document of an error answer. A body that is not a problem document (a proxy's HTML
 * page, an empty body) still gives a typed error, titled after the status, with the request id
 * from the `X-Request-Id` header when the body has none.
 */
export function problemFromAnswer(status: number, bodyText: string, requestIdHeader: string | null): ApiError {
  let parsed: unknown = null;
  try {
    parsed = bodyText ? JSON.parse(bodyText) : null;
  } catch {
    parsed = null;
  }
  const body = isRecord(parsed) ? parsed : {};
  const problem: ProblemDocument = {
    type: typeof body["type"] === "string" ? body["type"] : `/problems/http-${status}`,
    title: typeof body["title"] === "string" ? body["title"] : `HTTP ${status}`,
    status: typeof body["status"] === "number" ? body["status"] : status,
    detail: typeof body["detail"] === "string" ? body["detail"] : null,
    requestId: typeof body["requestId"] === "string" ? body["requestId"] : requestIdHeader,
    errors: Array.isArray(body["errors"]) ? body["errors"].filter(isFieldError) : [],
  };
  return new ApiError(problem);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isFieldError(v: unknown): v is FieldError {
  return isRecord(v) && typeof v["field"] === "string" && typeof v["message"] === "string";
}
