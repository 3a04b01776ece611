// The device's open incident, wherever it is told from: this tab's stream (detection,
// incident), the REST API (after a reload, in a tab that is not listening, or when the stream
// is down), and the other tabs of this browser (BroadcastChannel). The countdown runs from the
// server's `seconds_left` (the database clock), never from this device's clock.

import { api } from "./api.js";

export const OPEN_STATES = ["pending", "dispatching"];
const POLL_OPEN_MS = 2000; // an open incident: how it ends must show within seconds
const POLL_IDLE_MS = 15000; // none known: another device's detection shows within this
const SEEN_KEY = "hearo.incidents.seen"; // finished incidents already shown to the person
// The server's incident states and their moves (shared/incident_state.py): only forward.
const NEXT_STATES = { pending: ["cancelled", "dispatching"], dispatching: ["dispatched", "failed"] };

export class IncidentTracker {
  /** onChange(incident | null): incident = {id, state, class, label_en, label_ko, deadline (ms,
   *  performance.now clock), outcome, reason, detail}. */
  constructor(onChange) {
    this.onChange = onChange;
    this.current = null;
    this.timer = null;
    this.channel = "BroadcastChannel" in window ? new BroadcastChannel("hearo-incidents") : null;
    if (this.channel) this.channel.onmessage = (event) => this.apply(event.data, false);
  }

  start() {
    this.poll();
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.poll();
    });
  }

  schedule() {
    clearTimeout(this.timer);
    const open = this.current && OPEN_STATES.includes(this.current.state);
    const ms = open ? (document.visibilityState === "visible" ? POLL_OPEN_MS : 2 * POLL_OPEN_MS) : POLL_IDLE_MS;
    this.timer = setTimeout(() => this.poll(), ms);
  }

  async poll() {
    try {
      if (this.current && OPEN_STATES.includes(this.current.state)) {
        this.apply(fromRest(await api("GET", `/v1/incidents/${this.current.id}`)));
      } else {
        const { incidents } = await api("GET", "/v1/incidents?limit=3");
        const open = incidents.find((i) => OPEN_STATES.includes(i.state));
        if (open) this.apply(fromRest(open));
      }
    } catch {
      // No connection: the stream, the other tabs or the next poll will tell.
    }
    this.schedule();
  }

  /** A gateway message of this tab's stream. */
  fromStream(message) {
    if (message.type === "detection" && message.incident_id) {
      const known = this.current && this.current.id === message.incident_id;
      this.apply({
        id: message.incident_id,
        state: known ? this.current.state : "pending",
        class: message.class, label_en: message.label_en, label_ko: message.label_ko,
        secondsLeft: message.seconds_left ?? (known ? undefined : null),
        deadlineAt: message.deadline_at ?? undefined,
      });
    } else if (message.type === "incident") {
      const update = { id: message.incident_id, state: message.state, detail: message.detail || {} };
      if (message.seconds_left !== undefined && message.seconds_left !== null) update.secondsLeft = message.seconds_left;
      if (message.state === "pending" && message.deadline_at) update.deadlineAt = message.deadline_at;
      if (message.evidence) update.evidence = message.evidence;
      if (message.corroboration) update.corroboration = message.corroboration;
      if (message.detail && message.detail.shortened) update.shortened = true;
      if (message.detail && message.detail.class) update.class = message.detail.class;
      if (message.detail && message.detail.also_detected) update.alsoDetected = message.detail.also_detected;
      if (message.detail && message.detail.reason) update.reason = message.detail.reason;
      this.apply(update);
    }
  }

  /** The answer of a cancel or confirm (REST), which is where the incident now stands. */
  fromAction(body, outcome) {
    this.apply({ ...fromRest(body), outcome });
  }

  apply(update, broadcast = true) {
    if (!update || !update.id) return;
    let incident = this.current && this.current.id === update.id ? { ...this.current } : null;
    if (!incident) {
      if (!OPEN_STATES.includes(update.state) || seen().includes(update.id)) return; // an old one
      incident = { id: update.id, state: update.state };
    } else if (isOlder(update, incident)) {
      // A poll answered before the stream's message, say; an action's outcome is still news.
      if (update.outcome === undefined) return;
      update = { id: update.id, outcome: update.outcome };
    }
    for (const key of ["state", "class", "label_en", "label_ko", "outcome", "reason", "detail", "deliveries", "evidence", "shortened", "corroboration", "alsoDetected"]) {
      if (update[key] !== undefined) incident[key] = update[key];
    }
    // Deadlines are kept on this page's clock, made local at once: clocks differ between
    // devices. "Seconds left" with a deadline also gives the server clock's offset, so a
    // deadline alone (an update: growing evidence brought the report forward) lands right.
    if (typeof update.secondsLeft === "number" && incident.state === "pending") {
      incident.deadline = performance.now() + update.secondsLeft * 1000;
      if (update.deadlineAt) this.clockOffset = incident.deadline - Date.parse(update.deadlineAt);
    } else if (update.deadlineAt && incident.state === "pending" && update.deadlineAt !== incident.deadlineAt) {
      const offset = this.clockOffset ?? performance.now() - Date.now();
      incident.deadline = Math.max(performance.now(), Date.parse(update.deadlineAt) + offset);
    }
    if (update.deadlineAt) incident.deadlineAt = update.deadlineAt;
    const changed = !this.current || this.current.id !== incident.id || this.current.state !== incident.state
      || this.current.deadline !== incident.deadline || this.current.outcome !== incident.outcome
      || this.current.class !== incident.class || this.current.evidence !== incident.evidence
      || this.current.shortened !== incident.shortened
      || String(this.current.alsoDetected) !== String(incident.alsoDetected)
      || JSON.stringify(this.current.corroboration) !== JSON.stringify(incident.corroboration);
    this.current = incident;
    if (broadcast && this.channel) {
      const { deadline, ...shared } = incident;
      const secondsLeft = deadline === undefined ? undefined : Math.max(0, (deadline - performance.now()) / 1000);
      this.channel.postMessage({ ...shared, secondsLeft });
    }
    if (changed) {
      this.onChange(incident);
      this.schedule();
    }
  }

  /** The person closed the finished alert: do not show this incident again in any tab. */
  dismiss() {
    if (this.current) {
      const ids = [this.current.id, ...seen()].slice(0, 20);
      localStorage.setItem(SEEN_KEY, JSON.stringify(ids));
    }
    this.current = null;
    this.onChange(null);
    this.schedule();
  }
}

/** Whether an incident in ``state`` can be in ``later`` now or after some moves. */
function leadsTo(state, later) {
  return later === state || (NEXT_STATES[state] || []).some((next) => leadsTo(next, later));
}

/** Whether ``update`` is older than what the page knows of ``incident``: a state it has left,
 *  or a later deadline while pending (a deadline only ever moves earlier: docs/evidence.md). */
function isOlder(update, incident) {
  if (update.state && !leadsTo(incident.state, update.state)) return true;
  return update.state === "pending" && incident.state === "pending" && Boolean(update.deadlineAt)
    && Boolean(incident.deadlineAt) && Date.parse(update.deadlineAt) > Date.parse(incident.deadlineAt);
}

function seen() {
  try {
    return JSON.parse(localStorage.getItem(SEEN_KEY)) || [];
  } catch {
    return [];
  }
}

/** GET /v1/incidents(/{id}) body → a tracker update. */
export function fromRest(body) {
  return {
    id: body.incident_id, state: body.state, class: body.class, label_en: body.label_en, label_ko: body.label_ko,
    secondsLeft: body.state === "pending" ? body.seconds_left : undefined, reason: body.cancel_reason ?? undefined,
    deliveries: body.deliveries, evidence: body.evidence ?? undefined, deadlineAt: body.deadline_at ?? undefined,
    corroboration: body.corroboration ?? undefined, alsoDetected: body.also_detected ?? undefined,
  };
}
