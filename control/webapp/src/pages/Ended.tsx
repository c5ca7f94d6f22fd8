import { useT } from "../i18n.js";
import { navigate } from "../router.js";

export function Ended(props: { appointmentId: string; how: "ended" | "hungup" }) {
  const { t } = useT();
  return (
    <section className="view narrow" aria-labelledby="ended-title" data-testid="ended-view">
      <h1 id="ended-title">{props.how === "hungup" ? t("hangup") : t("endedTitle")}</h1>
      <div className="card stack">
        <p data-testid="ended-message">{props.how === "hungup" ? t("hungUpBody") : t("endedBody")}</p>
        <div className="row">
          {props.how === "hungup" && (
            <button type="button" className="secondary" onClick={() => navigate(`/check/${encodeURIComponent(props.appointmentId)}`)} data-testid="rejoin">
              {t("rejoin")}
            </button>
          )}
          <button type="button" onClick={() => navigate("/appointments")} data-testid="ended-back">
            {t("back")}
          </button>
        </div>
      </div>
    </section>
  );
}
