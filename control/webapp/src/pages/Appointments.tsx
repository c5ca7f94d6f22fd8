import type { Appointment, AppointmentAction, JoinWindowRule } from "@teletip/sdk";
import { useCallback, useEffect, useState } from "react";
import { Confirm } from "../components/Confirm.js";
import { PushOptIn } from "../components/PushOptIn.js";
import { useT, type MessageKey } from "../i18n.js";
import { navigate } from "../router.js";
import { client, reason } from "../session.js";
import { clock, groupOf, when } from "../time.js";

const JOINABLE = new Set(["pending", "booked", "arrived", "checked-in"]);
// The join window is the server's (GET /v1/consultations/join-window, its
// scheduling.join-before-minutes / join-after-minutes); it only chooses whether to show Join or
// "you can join from" here: the server decides on each join.

const names = new Map<string, string>();
async function nameOf(kind: "practitioner" | "patient", id: string): Promise<string | null> {
  const key = `${kind}:${id}`;
  if (names.has(key)) return names.get(key) ?? null;
  try {
    const r = await client.request<{ displayName?: string }>("GET", `/v1/${kind}s/${encodeURIComponent(id)}`);
    if (r.displayName) names.set(key, r.displayName);
    return r.displayName ?? null;
  } catch {
    return null;
  }
}

/** Where "Join" leads: a patient without the required consents reads the notice first. */
export async function startJoin(id: string): Promise<void> {
  const next = `/check/${encodeURIComponent(id)}`;
  if (client.user?.role === "patient") {
    try {
      const c = await client.consents();
      if (c.missingRequired.length > 0) {
        navigate(`/privacy?next=${encodeURIComponent(next)}`);
        return;
      }
    } catch {
      /* the room's own refusal explains it */
    }
  }
  navigate(next);
}

function actionsFor(a: Appointment, role: string, now: number): AppointmentAction[] {
  const start = Date.parse(a.start);
  const acts: AppointmentAction[] = [];
  if (a.status === "proposed" && role === "patient") acts.push("confirm");
  if (a.status === "pending" && role !== "patient") acts.push("confirm");
  if (["proposed", "pending", "booked"].includes(a.status) && start > now) acts.push("cancel");
  return acts;
}

export function Appointments() {
  const { t, lang } = useT();
  const [items, setItems] = useState<Appointment[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [who, setWho] = useState<Record<string, string>>({});
  const [asking, setAsking] = useState<{ a: Appointment; action: AppointmentAction } | null>(null);
  const [now, setNow] = useState(Date.now());
  const [rule, setRule] = useState<JoinWindowRule | null>(null);
  const role = client.user?.role ?? "patient";

  const load = useCallback(async () => {
    setError(null);
    try {
      const [list, windowRule] = await Promise.all([client.listAppointments({ limit: 100 }), client.joinWindow()]);
      setRule(windowRule);
      list.sort((x, y) => Date.parse(x.start) - Date.parse(y.start));
      setItems(list);
      setNow(Date.now());
      for (const a of list) {
        const [kind, id] = role === "practitioner" ? (["patient", a.patientId] as const) : (["practitioner", a.practitionerId] as const);
        void nameOf(kind, id).then((n) => n && setWho((w) => ({ ...w, [a.id]: n })));
      }
    } catch (e) {
      setError(t("loadFailed", { reason: reason(e) }));
    }
  }, [role, t]);

  useEffect(() => {
    void load();
    // Join buttons appear when the window opens without a reload.
    const timer = setInterval(() => setNow(Date.now()), 30000);
    return () => clearInterval(timer);
  }, [load]);

  async function act(a: Appointment, action: AppointmentAction) {
    try {
      await client.changeAppointment(a.id, action, action === "cancel" ? { reason: "cancelled in the web client" } : {});
      await load();
    } catch (e) {
      setError(reason(e));
    }
  }

  const groups = { today: [] as Appointment[], upcoming: [] as Appointment[], past: [] as Appointment[] };
  for (const a of items ?? []) groups[groupOf(a.start, a.end, new Date(now))].push(a);
  groups.past.reverse();

  const row = (a: Appointment) => {
    const start = Date.parse(a.start);
    const end = Date.parse(a.end);
    const before = (rule?.beforeMinutes ?? 0) * 60000;
    const after = (rule?.afterMinutes ?? 0) * 60000;
    const joinable = rule !== null && JOINABLE.has(a.status) && now < end + after;
    const open = now >= start - before;
    const name = who[a.id];
    const whoText = role === "practitioner" ? t("withPatient", { name: name ?? t("patient") }) : t("withPractitioner", { name: name ?? t("practitioner") });
    return (
      <li key={a.id} className="appt card" data-testid="appointment" data-appointment-id={a.id} data-status={a.status}>
        <div className="appt-info">
          <div className="appt-time">{when(lang, a.start, a.end)}</div>
          <div className="appt-who">{whoText}</div>
          <div className="appt-status" data-testid="appointment-status" data-status={a.status}>
            {t(`status.${a.status}` as MessageKey)}
          </div>
        </div>
        <div className="appt-actions">
          {joinable && open && (
            <button type="button" onClick={() => void startJoin(a.id)} data-testid="appointment-open" aria-label={`${t("join")}: ${when(lang, a.start, a.end)}`}>
              {t("join")}
            </button>
          )}
          {joinable && !open && <span className="muted">{t("joinOpensAt", { time: clock(lang, start - before) })}</span>}
          {actionsFor(a, role, now).map((action) => (
            <button
              key={action}
              type="button"
              className={action === "cancel" ? "secondary" : ""}
              onClick={() => (action === "cancel" ? setAsking({ a, action }) : void act(a, action))}
              data-testid={`appointment-${action}`}
              aria-label={`${action === "cancel" ? (a.status === "proposed" ? t("decline") : t("cancel")) : t("confirm")}: ${when(lang, a.start, a.end)}`}
            >
              {action === "cancel" ? (a.status === "proposed" ? t("decline") : t("cancel")) : t("confirm")}
            </button>
          ))}
        </div>
      </li>
    );
  };

  return (
    <section className="view" aria-labelledby="appointments-title" data-testid="appointments-view">
      <div className="row between">
        <h1 id="appointments-title">{t("appointmentsTitle")}</h1>
        <div className="row">
          {role === "patient" && (
            <button type="button" className="secondary" onClick={() => navigate("/privacy")} data-testid="privacy-link">
              {t("privacyLink")}
            </button>
          )}
          <button type="button" className="secondary" onClick={() => void load()} data-testid="appointments-reload">
            {t("refresh")}
          </button>
        </div>
      </div>
      {role === "practitioner" && <PushOptIn />}
      {error && (
        <p className="alert" role="alert" data-testid="appointments-error">
          {error}
        </p>
      )}
      {items === null && !error && <p>{t("loading")}</p>}
      {items !== null && items.length === 0 && <p data-testid="appointments-empty">{t("noAppointments")}</p>}
      {items !== null && items.length > 0 && (
        <div data-testid="appointments">
          {(["today", "upcoming", "past"] as const).map((g) => (
            <section key={g} aria-labelledby={`group-${g}`} className="group" data-testid={`group-${g}`}>
              <h2 id={`group-${g}`}>{t(g)}</h2>
              {groups[g].length === 0 ? <p className="muted">{t("noneInGroup")}</p> : <ul className="appointments">{groups[g].map(row)}</ul>}
            </section>
          ))}
        </div>
      )}
      <Confirm
        open={asking !== null}
        text={asking ? t("cancelAsk", { when: when(lang, asking.a.start, asking.a.end) }) : ""}
        yes={t("yesCancel")}
        no={t("keep")}
        onNo={() => setAsking(null)}
        onYes={() => {
          const a = asking;
          setAsking(null);
          if (a) void act(a.a, a.action);
        }}
        testid="confirm-cancel"
      />
    </section>
  );
}
