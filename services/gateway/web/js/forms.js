// The person's details, one form for registration and for settings: profile, place, contacts
// and consents, read back as the body of POST /v1/devices or PATCH /v1/devices/me.

import { h } from "./dom.js";
import { t } from "./i18n.js";

const MAX_CONTACTS = 10;
let serial = 0;

function field(label, input, hint) {
  const id = input.id || `f${++serial}`;
  input.id = id;
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  return h("div", { class: "field" },
    h("label", { for: id, "data-i18n": label }, t(label)),
    input,
    hint ? h("p", { class: "hint", id: hintId, "data-i18n": hint }, t(hint)) : null);
}

function consent(name, key, checked, required = false) {
  const id = `f${++serial}`;
  return h("div", { class: "consent" },
    h("input", { type: "checkbox", id, name, checked, required }),
    h("label", { for: id, "data-i18n": key }, t(key)));
}

/** The fields, filled from `device` (GET /v1/devices/me) when given. */
export function buildProfileForm(form, device = null, { onLocate } = {}) {
  const profile = device ? device.profile : {};
  form.replaceChildren();
  form.noValidate = false;
  const contacts = h("div", { class: "contacts" });
  const addContact = (contact = {}) => {
    if (contacts.children.length >= MAX_CONTACTS) return;
    const n = contacts.children.length + 1;
    const row = h("fieldset", { class: "contact" },
      h("legend", {}, `${t("contacts.heading")} ${n}`),
      field("contacts.name", h("input", { name: "c_name", autocomplete: "off", maxlength: 200, value: contact.name || "" })),
      field("contacts.relation", h("input", { name: "c_relation", maxlength: 100, value: contact.relation || "" })),
      field("contacts.phone", h("input", { name: "c_phone", type: "tel", inputmode: "tel", autocomplete: "off",
        pattern: "\\s*\\+[\\d\\s().\\-]{7,}", placeholder: "+82 10 1234 5678", value: contact.phone || "" })),
      h("button", { type: "button", class: "secondary", "aria-label": t("contacts.remove", { n }),
        onclick: () => row.remove() }, "✕"));
    contacts.append(row);
  };
  for (const contact of (device && device.contacts) || []) addContact(contact);
  if (!device) addContact();

  const location = device && device.location;
  const located = h("p", { class: "located", "aria-live": "polite" });
  form.dataset.location = location ? JSON.stringify(location) : "";
  const showLocation = () => {
    const where = form.dataset.location ? JSON.parse(form.dataset.location) : null;
    located.textContent = where
      ? t("place.located", { lat: where.latitude.toFixed(5), lon: where.longitude.toFixed(5), acc: Math.round(where.accuracy_m) })
      : "";
  };
  showLocation();

  form.append(
    h("h2", { "data-i18n": "profile.heading" }, t("profile.heading")),
    field("profile.name", h("input", { name: "name", autocomplete: "name", required: true, maxlength: 200, value: profile.name || "" })),
    field("profile.birth_year", h("input", { name: "birth_year", type: "number", inputmode: "numeric", required: true,
      min: new Date().getFullYear() - 125, max: new Date().getFullYear(), value: profile.birth_year || "" })),
    field("profile.medical_notes", h("textarea", { name: "medical_notes", rows: 3, maxlength: 4000 }, profile.medical_notes || ""),
      "profile.medical_notes.hint"),
    h("h2", { "data-i18n": "place.heading" }, t("place.heading")),
    field("place.address", h("input", { name: "address", autocomplete: "street-address", maxlength: 500, value: (device && device.address) || "" }),
      "place.address.hint"),
    h("div", { class: "row" },
      h("button", { type: "button", class: "secondary", "data-i18n": "place.locate", onclick: () => locate() }, t("place.locate")),
      h("button", { type: "button", class: "secondary", "data-i18n": "place.clear",
        onclick: () => { form.dataset.location = ""; showLocation(); } }, t("place.clear"))),
    located,
    h("h2", { "data-i18n": "contacts.heading" }, t("contacts.heading")),
    h("p", { class: "hint", "data-i18n": "contacts.hint" }, t("contacts.hint")),
    contacts,
    h("button", { type: "button", class: "secondary", "data-i18n": "contacts.add", onclick: () => addContact() }, t("contacts.add")),
    h("h2", { "data-i18n": "consent.heading" }, t("consent.heading")),
    consent("consent_recording", "consent.recording", device ? device.consent_recording : false, true),
    consent("consent_location", "consent.location", device ? device.consent_location : false),
    consent("consent_share_profile", "consent.share_profile", device ? device.consent_share_profile : false),
    h("p", { class: "hint", "data-i18n": "consent.contacts" }, t("consent.contacts")),
  );
  if (device) form.elements.consent_recording.disabled = true; // withdrawn by deleting the data

  function locate() {
    if (!navigator.geolocation) return (located.textContent = t("place.locate.failed", { message: "—" }));
    // Asking for the position is itself the consent to use it: tick the box and say so.
    if (!form.elements.consent_location.checked) {
      form.elements.consent_location.checked = true;
      located.textContent = t("place.locate.consent");
    }
    navigator.geolocation.getCurrentPosition(
      (position) => {
        const { latitude, longitude, accuracy } = position.coords;
        form.dataset.location = JSON.stringify({ latitude, longitude, accuracy_m: Math.min(accuracy, 100000) });
        showLocation();
        if (onLocate) onLocate();
      },
      (error) => (located.textContent = t("place.locate.failed", { message: error.message })),
      { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 },
    );
  }
}

/** The form as an API body (registration when `registering`, else a PATCH of every field). */
export function readProfileForm(form, registering) {
  const el = form.elements;
  const text = (value) => (value.trim() === "" ? null : value);
  const body = {
    profile: { name: el.name.value, birth_year: Number(el.birth_year.value), medical_notes: text(el.medical_notes.value) },
    address: text(el.address.value),
    contacts: [...form.querySelectorAll("fieldset.contact")].map((row) => ({
      name: row.querySelector("[name=c_name]").value,
      relation: row.querySelector("[name=c_relation]").value,
      phone: row.querySelector("[name=c_phone]").value,
    })).filter((c) => c.name || c.phone),
    consent_location: el.consent_location.checked,
    consent_share_profile: el.consent_share_profile.checked,
  };
  const where = form.dataset.location ? JSON.parse(form.dataset.location) : null;
  body.location = where && body.consent_location
    ? { latitude: where.latitude, longitude: where.longitude, accuracy_m: where.accuracy_m } : null;
  if (registering) {
    body.consent_recording = el.consent_recording.checked;
    if (!body.location) delete body.location;
  }
  return body;
}
