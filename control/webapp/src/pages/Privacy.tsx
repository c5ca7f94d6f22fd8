import { ApiError, type ConsentState, type PrivacyNotice } from "@teletip/sdk";
import { useEffect, useState, type FormEvent } from "react";
import { useT } from "../i18n.js";
import { navigate } from "../router.js";
import { client, reason } from "../session.js";

export function Privacy(props: { next: string | null }) {
  const { t } = useT();
  const [notice, setNotice] = useState<PrivacyNotice | null | "none">(null);
  const [state, setState] = useState<ConsentState | null>(null);
  const [chosen, setChosen] = useState<Record<string, boolean>>({});
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState(false);

  useEffect(() => {
    (async () => {
      try {
        const [n, s] = await Promise.all([
          client.currentPrivacyNotice().catch((e: unknown) => {
            if (e instanceof ApiError && e.status === 404) return "none" as const;
            throw e;
          }),
          client.consents(),
        ]);
        setNotice(n);
        setState(s);
        const given: Record<string, boolean> = {};
        for (const c of s.current) if (c.decision === "given" && n !== "none" && c.noticeVersion === n.version) given[c.purpose] = true;
        setChosen(given);
      } catch (e) {
        setError(reason(e));
      }
    })();
  }, []);

  async function save(e: FormEvent) {
    e.preventDefault();
    if (!notice || notice === "none" || !state) return;
    setError(null);
    try {
      for (const p of notice.purposes) {
        const isGiven = state.current.some((c) => c.purpose === p.code && c.decision === "given" && c.noticeVersion === notice.version);
        const want = chosen[p.code] === true;
        if (want !== isGiven) await client.recordConsent({ noticeVersion: notice.version, purpose: p.code, decision: want ? "given" : "withdrawn" });
      }
      const s = await client.consents();
      setState(s);
      if (s.missingRequired.length > 0) {
        setError(t("consentMissing", { purposes: s.missingRequired.join(", ") }));
        return;
      }
      setSaved(true);
      if (props.next) navigate(props.next, true);
    } catch (err) {
      setError(reason(err));
    }
  }

  return (
    <section className="view" aria-labelledby="privacy-title" data-testid="privacy-view">
      <h1 id="privacy-title">{t("privacyTitle")}</h1>
      {notice === null && !error && <p>{t("loading")}</p>}
      {notice === "none" && (
        <div className="card stack">
          <p>{t("noNotice")}</p>
          <button type="button" onClick={() => navigate(props.next ?? "/appointments", true)}>
            {t("continue")}
          </button>
        </div>
      )}
      {notice && notice !== "none" && (
        <form className="card stack" onSubmit={(e) => void save(e)}>
          <h2>{notice.title}</h2>
          <div className="notice-body" role="region" aria-label={notice.title} tabIndex={0} data-testid="notice-body">
            {notice.body.split(/\n{2,}/).map((para, i) => (
              <p key={i}>{para}</p>
            ))}
          </div>
          <fieldset className="stack">
            <legend>{t("privacyLink")}</legend>
            {notice.purposes.map((p) => (
              <div className="check" key={p.code}>
                <input
                  type="checkbox"
                  id={`purpose-${p.code}`}
                  checked={chosen[p.code] === true}
                  onChange={(e) => setChosen((c) => ({ ...c, [p.code]: e.target.checked }))}
                  data-testid={`consent-${p.code}`}
                />
                <label htmlFor={`purpose-${p.code}`}>
                  {p.description} <span className="muted">({p.required ? t("required") : t("optional")})</span>
                </label>
              </div>
            ))}
          </fieldset>
          {error && (
            <p className="alert" role="alert" data-testid="consent-error">
              {error}
            </p>
          )}
          {saved && !props.next && (
            <p className="note" data-testid="consent-saved">
              {t("consentSaved")}
            </p>
          )}
          <div className="row">
            <button type="submit" data-testid="consent-save">
              {t("saveConsent")}
            </button>
            <button type="button" className="secondary" onClick={() => navigate("/appointments")}>
              {t("back")}
            </button>
          </div>
        </form>
      )}
      {error && notice === null && (
        <p className="alert" role="alert">
          {error}
        </p>
      )}
    </section>
  );
}
