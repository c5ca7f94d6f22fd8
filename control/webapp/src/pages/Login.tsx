import { ApiError, NetworkError } from "@teletip/sdk";
import { useRef, useState, type FormEvent } from "react";
import { useT } from "../i18n.js";
import { client, useFlash } from "../session.js";

export function Login(props: { onLoggedIn: () => void }) {
  const { t } = useT();
  const flash = useFlash();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [needCode, setNeedCode] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const codeRef = useRef<HTMLInputElement>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const c = code.replace(/\s+/g, "");
      // Six digits are the authenticator's code; anything else is a recovery code.
      const second = needCode && c ? (/^\d{6}$/.test(c) ? { otp: c } : { recoveryCode: c }) : undefined;
      await client.login(email.trim(), password, second);
      flash(null);
      props.onLoggedIn();
    } catch (err) {
      if (err instanceof ApiError && err.kind === "mfa-required") {
        const first = !needCode;
        setNeedCode(true);
        setError(first ? t("secondFactorNeeded") : t("secondFactorWrong"));
        setTimeout(() => codeRef.current?.focus(), 0);
      } else if (err instanceof ApiError && err.status === 429) setError(t("tooMany"));
      else if (err instanceof ApiError && err.status === 401) setError(needCode ? t("secondFactorWrong") : t("loginFailed"));
      else if (err instanceof NetworkError) setError(t("networkDown"));
      else setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="view narrow" aria-labelledby="login-title" data-testid="login-view">
      <h1 id="login-title">{t("loginTitle")}</h1>
      <form className="card stack" onSubmit={(e) => void submit(e)} noValidate>
        <div className="field">
          <label htmlFor="login-email">{t("email")}</label>
          <input id="login-email" type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} data-testid="login-email" />
        </div>
        <div className="field">
          <label htmlFor="login-password">{t("password")}</label>
          <input id="login-password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} data-testid="login-password" />
        </div>
        {needCode && (
          <div className="field">
            <label htmlFor="login-otp">{t("secondFactor")}</label>
            <input id="login-otp" ref={codeRef} autoComplete="one-time-code" value={code} onChange={(e) => setCode(e.target.value)} data-testid="login-otp" />
          </div>
        )}
        {error && (
          <p className="alert" role="alert" data-testid="login-error">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy} data-testid="login-submit">
          {t("loginButton")}
        </button>
      </form>
    </section>
  );
}
