import { useCallback, useEffect, useMemo, useState } from "react";
import { initialLang, LangContext, translator, type Lang } from "./i18n.js";
import { navigate, useRoute } from "./router.js";
import { client, FlashContext, type Flash } from "./session.js";
import { Login } from "./pages/Login.js";
import { MfaSetup } from "./pages/MfaSetup.js";
import { Appointments } from "./pages/Appointments.js";
import { Privacy } from "./pages/Privacy.js";
import { DeviceCheck } from "./pages/DeviceCheck.js";
import { Room } from "./pages/Room.js";
import { Ended } from "./pages/Ended.js";

export function App() {
  const [lang, setLang] = useState<Lang>(initialLang);
  const t = useMemo(() => translator(lang), [lang]);
  const route = useRoute();
  const [user, setUser] = useState(client.user);
  const [flash, setFlash] = useState<Flash | null>(null);

  useEffect(() => {
    document.documentElement.lang = lang;
    localStorage.setItem("teletip.lang", lang);
  }, [lang]);

  // A session the server ended (refresh refused, logout elsewhere, password changed): back to
  // the login page once, with the reason; never a retry loop.
  useEffect(
    () =>
      client.auth.on("session-ended", () => {
        setUser(null);
        setFlash({ text: t("sessionEnded"), kind: "error" });
        navigate("/", true);
      }),
    [t],
  );

  const loggedIn = user !== null;
  // Pages behind the login: without one, the login page (and back to the page after it).
  useEffect(() => {
    if (!loggedIn && route.page !== "login") navigate("/", true);
    if (loggedIn && route.page === "login") navigate(client.mfaEnrollmentRequired ? "/mfa" : "/appointments", true);
  }, [loggedIn, route.page]);

  const logout = useCallback(async () => {
    await client.logout();
    setUser(null);
    navigate("/", true);
  }, []);

  // Each page's title names the page (screen readers announce it; the lobby adds its badge).
  const title = {
    login: t("loginTitle"),
    mfa: t("mfaTitle"),
    appointments: t("appointmentsTitle"),
    privacy: t("privacyTitle"),
    check: t("checkTitle"),
    room: t("roomTitle"),
    ended: t("endedTitle"),
  }[route.page];
  useEffect(() => {
    document.title = `${title} – teletip`;
  }, [title]);

  let page;
  if (!loggedIn || route.page === "login") page = <Login onLoggedIn={() => setUser(client.user)} />;
  else if (route.page === "mfa") page = <MfaSetup />;
  else if (route.page === "appointments") page = <Appointments />;
  else if (route.page === "privacy") page = <Privacy next={route.next} />;
  else if (route.page === "check") page = <DeviceCheck appointmentId={route.id} />;
  else if (route.page === "room") page = <Room key={route.id} appointmentId={route.id} baseTitle={`${title} – teletip`} />;
  else page = <Ended appointmentId={route.id} how={route.how} />;

  return (
    <LangContext.Provider value={{ lang, t }}>
      <FlashContext.Provider value={setFlash}>
        <a className="skip" href="#main">{t("skip")}</a>
        <header className="bar">
          <span className="brand">teletip</span>
          <div className="bar-end">
            <label className="lang">
              <span className="visually-hidden">{t("language")}</span>
              <select value={lang} onChange={(e) => setLang(e.target.value === "tr" ? "tr" : "en")} data-testid="language">
                <option value="en">English</option>
                <option value="tr">Türkçe</option>
              </select>
            </label>
            {user && (
              <div className="whoami">
                <span data-testid="user-name">{user.displayName}</span>
                <span className="badge" data-testid="user-role">{user.role}</span>
                <button type="button" className="secondary" onClick={() => void logout()} data-testid="logout">
                  {t("logout")}
                </button>
              </div>
            )}
          </div>
        </header>
        <div className="status" role="status" aria-live="polite" aria-atomic="true" data-testid="status">
          {flash && <p className={flash.kind === "error" ? "alert" : "note"}>{flash.text}</p>}
        </div>
        <main id="main" tabIndex={-1}>
          {page}
        </main>
      </FlashContext.Provider>
    </LangContext.Provider>
  );
}
