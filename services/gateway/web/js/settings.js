// Settings: language, the person's details and consents (PATCH /v1/devices/me), what Hear-o
// learned from the cancels and the week's summary (learning.js), the cancel code (write-only), "sign out other devices" (a new token for this browser: POST
// /v1/devices/me/token) and erasure.

import { api, setToken } from "./api.js";
import { $ } from "./dom.js";
import { buildProfileForm, readProfileForm } from "./forms.js";
import { language, setLanguage, t } from "./i18n.js";
import { LearningView } from "./learning.js";

export class SettingsView {
  constructor(root, { onDevice, onErased }) {
    this.root = root;
    this.form = $("#settings-form", root);
    this.status = $("#settings-status", root);
    this.onDevice = onDevice;
    this.learning = new LearningView($("#settings-learning", root));
    for (const radio of root.querySelectorAll("input[name=lang]")) {
      radio.addEventListener("change", () => setLanguage(radio.value, true));
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    $("#settings-rotate", root).addEventListener("click", () => this.rotate());
    this.code = $("#settings-code-input", root);
    $("#settings-code", root).addEventListener("submit", (event) => {
      event.preventDefault();
      this.saveCode(this.code.value);
    });
    $("#settings-code-clear", root).addEventListener("click", () => this.saveCode(null));
    $("#settings-erase", root).addEventListener("click", async () => {
      if (!confirm(t("settings.erase.confirm"))) return;
      await this.run(() => api("DELETE", "/v1/devices/me"), "settings.erased");
      setToken(null);
      onErased();
    });
  }

  show(device) {
    for (const radio of this.root.querySelectorAll("input[name=lang]")) radio.checked = radio.value === language();
    buildProfileForm(this.form, device);
    this.status.textContent = "";
    this.learning.load();
  }

  async save() {
    if (!this.form.reportValidity()) return;
    const device = await this.run(() => api("PATCH", "/v1/devices/me", readProfileForm(this.form, false)), "settings.saved");
    if (device) this.onDevice(device);
  }

  /** The cancel code (PATCH duress_code; null removes it). Never read back: the field is
   *  emptied and nothing on the page says whether a code is set (docs/evidence.md). */
  async saveCode(code) {
    const status = $("#settings-code-status", this.root);
    const words = (code || "").normalize("NFKC").trim().split(/\s+/);
    if (code !== null && !(/^[0-9]{4,12}$/.test(words.join(" ")) || words.length >= 2)) {
      status.textContent = t("settings.code.invalid");
      return;
    }
    status.textContent = "…";
    try {
      await api("PATCH", "/v1/devices/me", { duress_code: code });
      status.textContent = t(code === null ? "settings.code.cleared" : "settings.code.saved");
    } catch (error) {
      status.textContent = error.status === 422 ? t("settings.code.invalid") : t("error.generic", { message: error.message });
    }
    this.code.value = "";
  }

  async rotate() {
    if (!confirm(t("settings.rotate.confirm"))) return;
    const credentials = await this.run(() => api("POST", "/v1/devices/me/token"), "settings.rotated");
    // This browser's tabs share the storage: they all go on with the new token.
    if (credentials) setToken(credentials.token);
  }

  async run(call, done) {
    this.status.textContent = "…";
    try {
      const result = await call();
      this.status.textContent = t(done);
      return result;
    } catch (error) {
      this.status.textContent = t("error.generic", { message: error.message });
      return null;
    }
  }
}
