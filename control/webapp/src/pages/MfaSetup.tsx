import { useEffect, useState, type FormEvent } from "react";
import { useT } from "../i18n.js";
import { navigate } from "../router.js";
import { client, reason } from "../session.js";

export function MfaSetup() {
  const { t } = useT();
  const [uri, setUri] = useState<string | null>(null);
  const [code, setCode] = useState("");
  const [codes, setCodes] = useState<string[] | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    client.request<{ otpauthUri: string; secret: string }>("POST", "/v1/auth/mfa/enroll", {}).then(
      (e) => setUri(e.otpauthUri),
      (e: unknown) => setError(reason(e)),
    );
  }, []);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const r = await client.request<{ recoveryCodes: string[] }>("POST", "/v1/auth/mfa/confirm", { code: code.trim() });
      client.mfaEnrolled();
      setCodes(r.recoveryCodes);
    } catch (err) {
      setError(reason(err));
    }
  }

  return (
    <section className="view narrow" aria-labelledby="mfa-title" data-testid="mfa-view">
      <h1 id="mfa-title">{t("mfaTitle")}</h1>
      <div className="card stack">
        {codes === null ? (
          <>
            <p>{t("mfaIntro")}</p>
            <p>
              <code className="wrap" data-testid="mfa-uri">{uri ?? t("loading")}</code>
            </p>
            <form className="stack" onSubmit={(e) => void submit(e)} noValidate>
              <div className="field">
                <label htmlFor="mfa-code">{t("mfaCode")}</label>
                <input id="mfa-code" autoComplete="one-time-code" inputMode="numeric" value={code} onChange={(e) => setCode(e.target.value)} data-testid="mfa-code" />
              </div>
              {error && (
                <p className="alert" role="alert" data-testid="mfa-error">
                  {error}
                </p>
              )}
              <button type="submit" data-testid="mfa-submit">
                {t("mfaSubmit")}
              </button>
            </form>
          </>
        ) : (
          <>
            <p>{t("mfaDone")}</p>
            <ul data-testid="mfa-codes">
              {codes.map((c) => (
                <li key={c}>
                  <code>{c}</code>
                </li>
              ))}
            </ul>
            <button type="button" onClick={() => navigate("/appointments", true)} data-testid="mfa-continue">
              {t("mfaContinue")}
            </button>
          </>
        )}
      </div>
    </section>
  );
}
