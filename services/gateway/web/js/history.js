// History: the device's incidents, newest first, with time, class, state and cancel reason;
// "Details" fetches where the report went, who among the contacts was told, and the clip (a
// signed link that expires in an hour; each one issued is in the incident's audit trail).

import { api, clipSource } from "./api.js";
import { h } from "./dom.js";
import { bilingual, formatTime, t } from "./i18n.js";

export class HistoryView {
  constructor(root) {
    this.root = root;
    this.list = root.querySelector("#history-list");
    this.status = root.querySelector("#history-status");
    root.querySelector("#history-refresh").addEventListener("click", () => this.load());
  }

  async load() {
    this.status.textContent = "…";
    try {
      const { incidents } = await api("GET", "/v1/incidents?limit=50");
      this.list.replaceChildren(...incidents.map((incident) => this.item(incident)));
      this.status.textContent = incidents.length ? "" : t("history.empty");
    } catch (error) {
      this.status.textContent = t("error.generic", { message: error.message });
    }
  }

  item(incident) {
    const [label, other] = bilingual(incident);
    const details = h("div", { class: "details", hidden: true });
    const toggle = h("button", { type: "button", class: "secondary", "aria-expanded": "false" }, t("history.details"));
    toggle.addEventListener("click", async () => {
      const opening = details.hidden;
      details.hidden = !opening;
      toggle.setAttribute("aria-expanded", String(opening));
      toggle.textContent = opening ? t("history.hide") : t("history.details");
      if (opening) await this.fill(details, incident);
    });
    const reason = incident.cancel_reason
      ? h("p", {}, t("history.cancel_reason", { reason: t(`reason.${incident.cancel_reason}`) === `reason.${incident.cancel_reason}`
        ? incident.cancel_reason : t(`reason.${incident.cancel_reason}`) }))
      : null;
    return h("li", { class: "incident", dataset: { id: incident.incident_id, state: incident.state } },
      h("div", { class: "incident-head" },
        h("time", { datetime: incident.detected_at }, formatTime(incident.detected_at)),
        h("span", { class: `badge state-${incident.state}` }, t(`state.${incident.state}`))),
      h("p", { class: "incident-class" }, h("strong", {}, label), " · ", h("span", { lang: other === incident.label_ko ? "ko" : "en" }, other)),
      reason, toggle, details);
  }

  async fill(details, incident) {
    details.replaceChildren(h("p", {}, "…"));
    try {
      const [detail, { notices }] = await Promise.all([
        api("GET", `/v1/incidents/${incident.incident_id}`),
        api("GET", `/v1/incidents/${incident.incident_id}/notices`),
      ]);
      const told = [
        ...detail.deliveries.map((d) => t("history.agency", { agency: d.agency, channel: channel(d.channel), state: delivery(d.state) })),
        ...notices.map((n) => t("history.notice", {
          name: n.contact.name, relation: n.contact.relation, channel: channel(n.channel), event: event(n.event), state: delivery(n.state),
        })),
      ];
      const clip = detail.clip
        ? h("div", { class: "clip" },
          h("audio", { controls: true, preload: "none", src: clipSource(detail.clip.url), "aria-label": t("history.clip") }),
          incident.state === "cancelled"
            ? h("button", { type: "button", class: "danger", onclick: (e) => this.deleteClip(e.target, incident, details) }, t("history.clip.delete"))
            : null)
        : h("p", {}, t("history.clip.none"));
      details.replaceChildren(
        h("h3", {}, t("history.told")),
        told.length ? h("ul", {}, told.map((line) => h("li", {}, line))) : h("p", {}, t("history.told.none")),
        h("h3", {}, t("history.clip")),
        clip);
    } catch (error) {
      details.replaceChildren(h("p", { role: "alert" }, t("error.generic", { message: error.message })));
    }
  }

  async deleteClip(button, incident, details) {
    if (!confirm(t("history.clip.delete.confirm"))) return;
    button.disabled = true;
    try {
      await api("DELETE", `/v1/incidents/${incident.incident_id}/clip`);
      details.querySelector(".clip").replaceWith(h("p", { role: "status" }, t("history.clip.deleted")));
    } catch (error) {
      button.disabled = false;
      details.append(h("p", { role: "alert" }, t("error.generic", { message: error.message })));
    }
  }
}

function channel(kind) {
  const key = `channel.${kind}`;
  return t(key) === key ? kind : t(key);
}

function delivery(state) {
  const key = `delivery.${state}`;
  return t(key) === key ? state : t(key);
}

function event(name) {
  const key = `event.${name}`;
  return t(key) === key ? name : t(key);
}
