// A confirmation in a native <dialog> (focus trapped and Escape handled by the browser).
import { useEffect, useRef } from "react";

export function Confirm(props: { open: boolean; text: string; yes: string; no: string; onYes: () => void; onNo: () => void; testid: string }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog ref={ref} className="confirm" aria-labelledby={`${props.testid}-text`} onCancel={props.onNo} data-testid={props.testid}>
      <p id={`${props.testid}-text`}>{props.text}</p>
      <div className="row">
        <button type="button" className="secondary" onClick={props.onNo} data-testid={`${props.testid}-no`} autoFocus>
          {props.no}
        </button>
        <button type="button" className="danger" onClick={props.onYes} data-testid={`${props.testid}-yes`}>
          {props.yes}
        </button>
      </div>
    </dialog>
  );
}
