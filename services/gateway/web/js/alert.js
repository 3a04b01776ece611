// The alert: an emergency sound heard takes the whole screen, with the class in Korean and
// English, the countdown to the report, Cancel with a reason and Report now; then how it ended.
// The countdown is announced to screen readers every 10 s (and each of the last 5), not every
// second, so the buttons stay usable with one.

import { ApiError, api } from "./api.js";
import { $, show } from "./dom.js";
import { language, t } from "./i18n.js";
import { OPEN_STATES } from "./incidents.js";

const REASONS = { false_alarm: "false alarm", handled: "handled it", not_sure: "not sure" };

export class AlertView {
  constructor(root, tracker) {
    this.root = root;
    this.tracker = tracker;
    this.incident = null;
    this.message = null;
    this.busy = false;
    this.tick = null;
    this.announced = null;
    this.sound = new AlertSound();
    for (const [key, reason] of Object.entries(REASONS)) {
      $(`[data-cancel="${key}"]`, root).addEventListener("click", () => this.act("cancel", reason, key));
    }
    $("#alert-report", root).addEventListener("click", () => this.act("confirm"));
    $("#alert-close", root).addEventListener("click", () => tracker.dismiss());
  }

  /** The tracker's incident changed (or is gone). */
  render(incident) {
    const opened = incident && (!this.incident || this.incident.id !== incident.id);
    this.incident = incident;
    if (!incident) {
      this.stopSignals();
      show(this.root, false);
      document.body.classList.remove("alerting");
      document.title = t("app.name");
      return;
    }
    if (opened) {
      this.message = null;
      $("#alert-code", this.root).value = "";
    }
    show(this.root, true);
    document.body.classList.add("alerting");
    const open = OPEN_STATES.includes(incident.state);
    this.root.dataset.state = incident.state;
    this.root.dataset.incident = incident.id;
    const labels = language() === "ko" ? [incident.label_ko, incident.label_en] : [incident.label_en, incident.label_ko];
    $("#alert-class", this.root).textContent = labels[0] || incident.class || "";
    $("#alert-class-other", this.root).textContent = labels[1] || "";
    // Every emergency heard while the incident is open is reported to its agency (docs/incidents.md, "Routing").
    const numbers = [incident.class, ...(incident.alsoDetected || [])].map(emergencyNumber);
    const agency = [...new Set(numbers)].map((number) => t(`alert.agency.${number}`)).join(", ");
    $("#alert-countdown-label", this.root).textContent = t("alert.countdown", { agency });
    show($("#alert-pending", this.root), incident.state === "pending");
    show($("#alert-final", this.root), !open || incident.state === "dispatching");
    show($("#alert-close", this.root), !open);
    $("#alert-outcome", this.root).textContent = this.outcomeText(incident, agency);
    $("#alert-message", this.root).textContent = this.message || "";
    $("#alert-evidence", this.root).textContent = incident.state === "pending" ? evidenceText(incident) : "";
    $("#alert-household", this.root).textContent = incident.state === "pending" ? householdText(incident) : "";
    if (incident.state === "pending") this.startSignals();
    else this.stopSignals();
    if (opened) {
      this.announced = null;
      $("[data-cancel=false_alarm]", this.root).focus();
    }
    if (!open) $("#alert-close", this.root).focus();
    this.update();
  }

  outcomeText(incident, agency) {
    if (incident.state === "cancelled") return t("alert.cancelled");
    if (incident.state === "dispatching") return t("alert.dispatching", { agency });
    if (incident.state === "dispatched") {
      const reached = (incident.detail && incident.detail.reached) || [];
      return t("alert.dispatched", { agency: reached.length ? reached.join(", ") : agency });
    }
    if (incident.state === "failed") {
      // The numbers whose agency the report missed (a report may go to several: docs/incidents.md).
      const missed = ((incident.detail && incident.detail.missed) || []).filter((id) => id === "112" || id === "119");
      return t("alert.failed", { phone: missed.length ? missed.join(", ") : emergencyNumber(incident.class) });
    }
    return "";
  }

  /** The countdown, four times a second while pending. */
  update() {
    const incident = this.incident;
    if (!incident || incident.state !== "pending" || incident.deadline === undefined) {
      $("#alert-seconds", this.root).textContent = incident && incident.state === "pending" ? "…" : "";
      return;
    }
    const left = Math.max(0, Math.ceil((incident.deadline - performance.now()) / 1000));
    $("#alert-seconds", this.root).textContent = String(left);
    $("#alert-reporting", this.root).hidden = left > 0;
    document.title = `⚠ ${left} · ${incident.label_ko || incident.class}`;
    const due = left <= 5 ? left : Math.ceil(left / 10) * 10;
    if (due !== this.announced && (left % 10 === 0 || left <= 5)) {
      this.announced = due;
      $("#alert-live", this.root).textContent = left > 0 ? t("alert.seconds_left", { s: left }) : t("alert.reporting");
    }
  }

  /** A cancel's `kind` (false_alarm, handled, not_sure) is kept with it: false alarms of one
   * sound teach this home's threshold (docs/evidence.md, "Cancels that teach"). */
  async act(action, reason, kind) {
    if (!this.incident || this.busy) return;
    this.busy = true;
    this.root.setAttribute("aria-busy", "true");
    const id = this.incident.id;
    // The code field is always there, typed in or not, so its presence tells nothing.
    const code = $("#alert-code", this.root).value;
    const body = action === "cancel" ? (code ? { reason, kind, code } : { reason, kind }) : undefined;
    if (action === "confirm") this.setMessage(t("alert.confirming"));
    try {
      let answer;
      // Retry a lost request a few times: a cancel or confirm is safe to repeat.
      for (let attempt = 0; ; attempt++) {
        try {
          answer = await api("POST", `/v1/incidents/${id}/${action}`, body);
          break;
        } catch (error) {
          if (error.status !== 0 || attempt >= 2) throw error;
          await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
        }
      }
      this.message = null;
      $("#alert-code", this.root).value = "";
      this.tracker.fromAction(answer.incident, answer.outcome);
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && error.body && error.body.detail.incident) {
        // Lost to the deadline (or already final): say what is true.
        this.message = action === "cancel" && error.code === "already_reported" ? t("alert.too_late") : error.message;
        this.tracker.fromAction(error.body.detail.incident, error.code);
      } else {
        this.setMessage(t("alert.error", { message: error.message }));
      }
    } finally {
      this.busy = false;
      this.root.removeAttribute("aria-busy");
      if (this.incident) this.render(this.incident);
    }
  }

  setMessage(text) {
    this.message = text;
    $("#alert-message", this.root).textContent = text;
  }

  startSignals() {
    if (!this.tick) this.tick = setInterval(() => this.update(), 250);
    this.sound.start();
    if (navigator.vibrate && !this.vibrating) {
      this.vibrating = setInterval(() => navigator.vibrate([400, 200, 400]), 2000);
      navigator.vibrate([400, 200, 400]);
    }
  }

  stopSignals() {
    clearInterval(this.tick);
    this.tick = null;
    this.sound.stop();
    if (this.vibrating) clearInterval(this.vibrating), navigator.vibrate && navigator.vibrate(0);
    this.vibrating = null;
  }
}

/** A two-tone chime every 2 s while a report is pending. Not an alarm rhythm (temporal-three or
 * -four): the microphone may hear it, and it must not sound like the fire it is warning of. */
export class AlertSound {
  constructor() {
    this.context = null;
    this.timer = null;
  }

  /** Call from a user gesture: the page then counts as one the person used, and the browser
   * lets the chime play later without another. The context is suspended until then: a running
   * one keeps an audio thread busy all the time a stream runs. */
  prime() {
    if (!this.context && "AudioContext" in window) {
      this.context = new AudioContext();
      if (!this.timer) this.context.suspend().catch(() => {});
    }
  }

  start() {
    if (this.timer) return;
    this.prime();
    if (this.context) this.context.resume().then(() => this.chime()).catch(() => {});
    this.timer = setInterval(() => this.chime(), 2000);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.context && this.context.state === "running") this.context.suspend().catch(() => {});
  }

  chime() {
    const context = this.context;
    if (!context || context.state !== "running") return;
    const at = context.currentTime;
    for (const [offset, hz] of [[0, 988], [0.35, 659]]) {
      const osc = context.createOscillator();
      const gain = context.createGain();
      osc.frequency.value = hz;
      gain.gain.setValueAtTime(0.0001, at + offset);
      gain.gain.exponentialRampToValueAtTime(0.4, at + offset + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + offset + 0.3);
      osc.connect(gain).connect(context.destination);
      osc.start(at + offset);
      osc.stop(at + offset + 0.32);
    }
  }
}

/** The number a class is reported to by default (shared/taxonomy.py: crime 112, the rest 119). */
function emergencyNumber(key) {
  return key === "crime" ? "112" : "119";
}

/** What the home's other devices heard at the moment (docs/evidence.md): only this device (the
 * report still goes), or the rooms where it was heard too. Nothing when none was listening. */
function householdText(incident) {
  const corroboration = incident.corroboration;
  if (!corroboration) return "";
  if (corroboration.only_this_device) return t("alert.household.only_this_device");
  const places = (corroboration.supporting || [])
    .filter((s) => s.how === "same_class")
    .map((s) => s.room || s.name)
    .filter(Boolean);
  return places.length ? t("alert.household.heard_also", { rooms: places.join(", ") }) : "";
}

/** What the countdown heard since the detection (docs/evidence.md), for the person: faded
 * never cancels, so the page says the report still goes. */
function evidenceText(incident) {
  if (incident.shortened) return t("alert.evidence.shortened");
  if (incident.evidence === "growing") return t("alert.evidence.growing");
  if (incident.evidence === "faded") return t("alert.evidence.faded");
  return "";
}
