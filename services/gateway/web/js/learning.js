// What Hear-o learned from this person's cancels (GET /v1/devices/me/thresholds), each change
// with an Undo (POST /v1/devices/me/thresholds/{id}/undo), and this week's summary
// (GET /v1/devices/me/summary) in the page's language. Part of the settings view.

import { api } from "./api.js";
import { $, h } from "./dom.js";
import { bilingual, formatTime, language, t } from "./i18n.js";

export class LearningView {
  constructor(root) {
    this.root = root;
    this.summary = $("#learning-summary", root);
    this.list = $("#learning-list", root);
    this.status = $("#learning-status", root);
  }

  async load() {
    this.status.textContent = "…";
    try {
      const [thresholds, summary] = await Promise.all([
        api("GET", "/v1/devices/me/thresholds"),
        api("GET", "/v1/devices/me/summary"),
      ]);
      this.summary.textContent = summary.text[language()] || summary.text.en;
      this.render(thresholds);
      this.status.textContent = "";
    } catch (error) {
      this.status.textContent = t("error.generic", { message: error.message });
    }
  }

  render(thresholds) {
    const changes = thresholds.classes.flatMap((cls) => cls.adjustments.map((change) => this.item(cls, change)));
    this.list.replaceChildren(...changes.reverse());
    if (!changes.length) this.list.replaceChildren(h("li", {}, t("learning.none")));
  }

  item(cls, change) {
    const [label] = bilingual(cls);
    const text = t("learning.change", {
      class: label,
      from: change.threshold_from.toFixed(2),
      to: change.threshold_to.toFixed(2),
      count: (change.evidence.incidents || []).length,
      date: formatTime(change.created_at),
    });
    const undo = change.undone_at
      ? h("span", { class: "badge" }, t("learning.undone"))
      : h("button", { type: "button", class: "secondary", onclick: () => this.undo(cls, change) }, t("learning.undo"));
    return h("li", { dataset: { adjustment: change.id } }, h("p", {}, text), undo);
  }

  async undo(cls, change) {
    const [label] = bilingual(cls);
    if (!confirm(t("learning.undo.confirm", { class: label, from: change.threshold_from.toFixed(2) }))) return;
    this.status.textContent = "…";
    try {
      const answer = await api("POST", `/v1/devices/me/thresholds/${change.id}/undo`);
      this.render(answer.thresholds);
      this.status.textContent = t("learning.undone.done");
    } catch (error) {
      this.status.textContent = t("error.generic", { message: error.message });
    }
  }
}
