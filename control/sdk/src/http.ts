import { NetworkError } from "./errors.js";
import { problemFromAnswer } from "./problem.js";

/** The part of a fetch Response the SDK reads. */
export interface ResponseLike {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}

export interface RequestInitLike {
  method: string;
  headers: Record<string, string>;
  body?: string;
}

/** `fetch` of the platform (browsers, React Native, Node 18+) or any function of that shape. */
export type FetchLike = (url: string, init: RequestInitLike) => Promise<ResponseLike>;

export function platformFetch(): FetchLike {
  const f = (globalThis as unknown as { fetch?: FetchLike }).fetch;
  if (!f) throw new Error("no fetch on this platform: pass one as the `fetch` option");
  return f.bind(globalThis);
}

/** One JSON request to the control plane; an error status becomes an ApiError. */
export async function requestJson<T>(
  fetch: FetchLike,
  baseUrl: string,
  method: string,
  path: string,
  options: { body?: unknown; token?: string | null; headers?: Record<string, string> } = {},
): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json", ...options.headers };
  const init: RequestInitLike = { method, headers };
  if (options.body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (options.token) headers["authorization"] = `Bearer ${options.token}`;
  let res: ResponseLike;
  try {
    res = await fetch(`${baseUrl}${path}`, init);
  } catch (e) {
    throw new NetworkError(`Cannot reach the server (${e instanceof Error ? e.message : String(e)}). Check the connection and try again.`, e);
  }
  const text = await res.text();
  if (!res.ok) throw problemFromAnswer(res.status, text, res.headers.get("x-request-id"));
  return (text ? JSON.parse(text) : undefined) as T;
}
