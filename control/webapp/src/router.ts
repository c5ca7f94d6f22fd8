// A few routes, on the History API (the server answers index.html for any of them).
import { useEffect, useState } from "react";

export type Route =
  | { page: "login" }
  | { page: "mfa" }
  | { page: "appointments" }
  | { page: "privacy"; next: string | null }
  | { page: "check"; id: string }
  | { page: "room"; id: string }
  | { page: "ended"; id: string; how: "ended" | "hungup" };

export function parse(path: string, search: string): Route {
  const q = new URLSearchParams(search);
  const m = /^\/(check|room|ended)\/([^/]+)$/.exec(path);
  if (m && m[1] && m[2]) {
    const id = decodeURIComponent(m[2]);
    if (m[1] === "check") return { page: "check", id };
    if (m[1] === "room") return { page: "room", id };
    return { page: "ended", id, how: q.get("how") === "hungup" ? "hungup" : "ended" };
  }
  if (path === "/privacy") return { page: "privacy", next: q.get("next") };
  if (path === "/mfa") return { page: "mfa" };
  if (path === "/appointments") return { page: "appointments" };
  return { page: "login" };
}

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.pathname, location.search));
  useEffect(() => {
    const on = () => setRoute(parse(location.pathname, location.search));
    window.addEventListener("popstate", on);
    return () => window.removeEventListener("popstate", on);
  }, []);
  return route;
}
