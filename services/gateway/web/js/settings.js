// Settings: language, the person's details and consents (PATCH /v1/devices/me), "sign out
// other devices" (a new token for this browser: POST /v1/devices/me/token) and erasure.

import { api, setToken } from "./api.js";
import { $ } from "./dom.js";
import { buildProfileForm, readProfileForm } from "./forms.js";
import { language, setLanguage, t } from "./i18n.js";

export class SettingsView {
  constructor(root, { onDevice, onErased }) {
    this.root = root;
    this.form = $("#settings-form", root);
    this.status = $("#settings-status", root);
    this.onDevice = onDevice;
    for (const radio of root.querySelectorAll("input[name=lang]")) {
      radio.addEventListener("change", () => setLanguage(radio.value, true));
    }
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    $("#settings-rotate", root).addEventListener("click", () => this.rotate());
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
  }

  async save() {
    if (!this.form.reportValidity()) return;
    const device = await this.run(() => api("PATCH", "/v1/devices/me", readProfileForm(this.form, false)), "settings.saved");
    if (device) this.onDevice(device);
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
