// The reviewer page (review.html): one segment at a time, its audio, one key per label, the
// next segment's audio fetched while this one plays. Keys as in `hearo review`: c confirm the
// system's class, 0-8 a class, n normal, u unclear, s skip, b back. The reviewer token stays in
// this tab's session storage (never in a URL); the name, in this browser.

import { request } from "./api.js";
import { $, h, show } from "./dom.js";
import { bilingual, chooseLanguage, language, onLanguage, setLanguage, t } from "./i18n.js";

const TOKEN_KEY = "hearo.reviewer.token";
const NAME_KEY = "hearo.reviewer.name";

const state = { segments: [], classes: [], index: 0, audio: new Map(), labelled: 0, busy: false, url: null };

/** The review API with the reviewer token (never the device token of this browser). */
function call(method, path, body) {
  return request(method, path, body, { auth: false, headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
}

/** The segment's audio as a blob URL, fetched once (the next segment's while this one plays). */
function audioOf(segment) {
  const id = segment.incident_id;
  if (!state.audio.has(id)) {
    const name = encodeURIComponent(localStorage.getItem(NAME_KEY));
    const loading = call("GET", `/v1/review/segments/${id}/audio?reviewer=${name}`)
      .then((response) => response.blob())
      .then((blob) => URL.createObjectURL(blob));
    loading.catch(() => state.audio.delete(id)); // fetched again when shown
    state.audio.set(id, loading);
  }
  return state.audio.get(id);
}

function className(key) {
  const found = state.classes.find((c) => c.key === key);
  return found ? bilingual(found)[0] : key;
}

function showView(name) {
  for (const view of ["signin", "segment", "done"]) show($(`#review-${view}`), view === name);
}

async function load() {
  try {
    const body = await (await call("GET", "/v1/review/segments?limit=500")).json();
    state.segments = body.segments;
    state.classes = body.classes;
    state.index = 0;
  } catch (error) {
    return signIn(error);
  }
  drawKeys();
  draw();
}

function signIn(error) {
  sessionStorage.removeItem(TOKEN_KEY);
  showView("signin");
  $("#reviewer-name").value = localStorage.getItem(NAME_KEY) || "";
  $("#signin-status").textContent = error ? t("review.error", { message: error.message }) : "";
}

function drawKeys() {
  const keys = [["c", "review.key.confirm"], ...state.classes.map((c) => [String(c.id), null, c.key]),
    ["n", "review.key.normal"], ["u", "review.key.unclear"], ["s", "review.key.skip"], ["b", "review.key.back"]];
  $("#review-keys").replaceChildren(...keys.map(([key, text, classKey]) =>
    h("button", { type: "button", class: "secondary", dataset: { key }, onclick: () => press(key) },
      h("kbd", {}, key), text ? t(text) : className(classKey))));
}

function draw() {
  const segment = state.segments[state.index];
  if (!segment) {
    showView("done");
    $("#done-summary").textContent = t("review.done.summary", { n: state.labelled });
    $("#done-title").focus();
    return;
  }
  showView("segment");
  $("#segment-position").textContent = `${state.index + 1} / ${state.segments.length}`;
  const cancel = segment.cancel_kind ? ` (${t(`review.cancel.${segment.cancel_kind}`)})` : "";
  $("#segment-decision").textContent = t("review.decision", {
    kind: t(`review.kind.${segment.kind}`), class: className(segment.class),
    confidence: Math.round(segment.confidence * 100), state: t(`review.state.${segment.state}`) + cancel,
  });
  $("#segment-decision").dataset.class = segment.class;
  $("#segment-consent").textContent = t(segment.exportable ? "review.consent.donated" : "review.consent.report");
  const last = segment.review;
  show($("#segment-last"), Boolean(last));
  if (last) {
    const label = last.label === "unclear" ? t("review.key.unclear") : className(last.label);
    $("#segment-last").textContent = t("review.last", { label, reviewer: last.reviewer });
  }
  // Sizes through the CSSOM: the page's content security policy refuses style attributes.
  const sized = (el, property, share) => { el.style[property] = `${Math.round(share * 100)}%`; return el; };
  $("#segment-averages").replaceChildren(...Object.entries(segment.averages).map(([key, value]) =>
    h("li", {}, h("span", {}, className(key)), h("span", { class: "bar" }, sized(h("span"), "width", value)),
      h("span", {}, value.toFixed(2)))));
  $("#segment-strip").replaceChildren(...segment.timeline.slice(-60).map((point) => sized(
    h("span", { class: point.class === segment.class ? "" : "other", title: `${point.t} s: ${className(point.class)} ${point.score}` }),
    "height", point.score)));
  $("#segment-strip").setAttribute("aria-label", t("review.strip.label", { n: segment.timeline.length }));
  $("#review-keys [data-key=c]").lastChild.textContent = t("review.key.confirm_class", { class: className(segment.class) });
  const player = $("#segment-audio");
  player.removeAttribute("src");
  player.dataset.incident = "";
  audioOf(segment).then((url) => {
    if (state.segments[state.index] !== segment) return;
    player.src = url;
    player.dataset.incident = segment.incident_id;
  }).catch((error) => { $("#review-status").textContent = t("review.error", { message: error.message }); });
  const next = state.segments[state.index + 1];
  if (next) audioOf(next).catch(() => {});
}

async function press(key) {
  const segment = state.segments[state.index];
  if (!segment || state.busy) return;
  let label = null;
  if (key === "c") label = segment.class;
  else if (key === "n") label = "normal";
  else if (key === "u") label = "unclear";
  else if (/^[0-8]$/.test(key)) label = state.classes.find((c) => String(c.id) === key)?.key;
  else if (key === "s") { state.index += 1; return draw(); }
  else if (key === "b") { state.index = Math.max(state.index - 1, 0); return draw(); }
  if (!label) return;
  state.busy = true;
  try {
    await call("POST", `/v1/review/segments/${segment.incident_id}/reviews`, { label, reviewer: localStorage.getItem(NAME_KEY) });
    segment.review = { label, reviewer: localStorage.getItem(NAME_KEY) };
    state.labelled += 1;
    $("#review-status").textContent = t("review.recorded", { label: label === "unclear" ? t("review.key.unclear") : className(label) });
    state.index += 1;
    draw();
  } catch (error) {
    if (error.status === 401) return signIn(error);
    $("#review-status").textContent = t("review.error", { message: error.message });
  } finally {
    state.busy = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey || $("#review-segment").hidden) return;
  if (event.target instanceof HTMLInputElement) return;
  const key = event.key.toLowerCase();
  if (/^[0-8cnusb]$/.test(key)) {
    event.preventDefault();
    press(key);
  }
});

$("#signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("#reviewer-token").value.trim();
  const name = $("#reviewer-name").value.trim();
  if (!token || !name) {
    $("#signin-status").textContent = t("review.signin.missing");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  localStorage.setItem(NAME_KEY, name);
  load();
});

$("#review-reload").addEventListener("click", () => load());
$("#lang-switch").addEventListener("click", () => setLanguage(language() === "ko" ? "en" : "ko", true));
onLanguage(() => { if (state.classes.length) { drawKeys(); if (!$("#review-segment").hidden) draw(); } });

await setLanguage(chooseLanguage());
if (sessionStorage.getItem(TOKEN_KEY) && localStorage.getItem(NAME_KEY)) load();
else signIn(null);
