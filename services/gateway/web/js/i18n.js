// Korean and English texts (web/i18n/*.json): chosen from the browser's languages, or the
// person's own choice (kept in this browser). Elements carry data-i18n="key" for their text and
// data-i18n-attr="attribute:key,..." for attributes such as aria-label or placeholder.

const LANGS = ["ko", "en"];
const STORE_KEY = "hearo.lang";
let lang = "en";
let texts = {};
const listeners = new Set();

export function chooseLanguage() {
  const stored = localStorage.getItem(STORE_KEY);
  if (LANGS.includes(stored)) return stored;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGS.includes(base)) return base;
  }
  return "en";
}

export async function setLanguage(next, remember = false) {
  const response = await fetch(`/web/i18n/${next}.json`);
  texts = await response.json();
  lang = next;
  if (remember) localStorage.setItem(STORE_KEY, next);
  document.documentElement.lang = next;
  translate(document);
  for (const listener of listeners) listener(next);
}

export function language() {
  return lang;
}

export function onLanguage(listener) {
  listeners.add(listener);
}

/** The text for `key` with {name} placeholders filled; the key itself when it has none. */
export function t(key, values = {}) {
  const text = texts[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in values ? String(values[name]) : `{${name}}`));
}

/** A label pair from the taxonomy ({label_ko, label_en}) in the current language first. */
export function bilingual(item) {
  return lang === "ko" ? [item.label_ko, item.label_en] : [item.label_en, item.label_ko];
}

export function translate(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(",")) {
      const [attribute, key] = pair.split(":");
      el.setAttribute(attribute.trim(), t(key.trim()));
    }
  }
}

export function formatTime(iso) {
  return new Date(iso).toLocaleString(lang === "ko" ? "ko-KR" : "en-GB", {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}
