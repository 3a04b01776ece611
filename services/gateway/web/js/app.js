// Hear-o's page: registration, listening with "what it hears", the alert, history, settings.
// Entry module; the others are one noun each (listener, incidents, alert, history, settings,
// forms, api, i18n, dom).

import { AlertView } from "./alert.js";
import { ApiError, api, setToken, token } from "./api.js";
import { $, h, show } from "./dom.js";
import { buildProfileForm, readProfileForm } from "./forms.js";
import { HistoryView } from "./history.js";
import { IncidentTracker } from "./incidents.js";
import { bilingual, chooseLanguage, language, onLanguage, setLanguage, t } from "./i18n.js";
import { ListenState, Listener } from "./listener.js";
import { SettingsView } from "./settings.js";

const VIEWS = ["register", "listen", "history", "settings"];
const LISTENING_KEY = "hearo.listening"; // this tab was listening: go on after a reload
const CLASSES_KEY = "hearo.classes";
const OTHER_TAB_S = 5;
// Drawing is most of what listening costs this device (bench/bench_web_client.py), and each
// redraw costs about the same whatever changed: the level (the loudest frame since the last
// one) and the scores are drawn together, at most once a second (twice: +1.6 % of a core), so
// the gateway is asked for no more scores than that.
const DRAW_MS = 1000;

// Read before anything draws: the first status drawn (not listening yet) clears it.
const resumeListening = sessionStorage.getItem(LISTENING_KEY) === "1";

const state = {
  device: null,
  classes: JSON.parse(localStorage.getItem(CLASSES_KEY) || "null"),
  scores: null,
  tags: null,
  otherTabListeningAt: 0,
};

const tabs = "BroadcastChannel" in window ? new BroadcastChannel("hearo-listening") : null;

const listener = new Listener({
  token,
  location: () => {
    const where = state.device && state.device.consent_location && state.device.location;
    return where ? { lat: where.latitude, lon: where.longitude, accuracy_m: where.accuracy_m } : null;
  },
  onStatus: renderStatus,
  onMessage: streamMessage,
  onLevel: renderLevel,
  scoresPerSecond: 1000 / DRAW_MS,
});
const tracker = new IncidentTracker((incident) => alertView.render(incident));
const alertView = new AlertView($("#alert"), tracker);
const historyView = new HistoryView($("#view-history"));
const settingsView = new SettingsView($("#view-settings"), {
  onDevice: (device) => (state.device = device),
  onErased: () => {
    listener.stop();
    state.device = null;
    route("register");
  },
});

function route(name) {
  if (!token()) name = "register";
  if (!VIEWS.includes(name)) name = "listen";
  for (const view of VIEWS) show($(`#view-${view}`), view === name);
  show($("#nav"), name !== "register");
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.hash === `#${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (name === "register") buildProfileForm($("#register-form"), null);
  if (name === "history") historyView.load();
  if (name === "settings" && state.device) settingsView.show(state.device);
  const heading = $(`#view-${name} h1`);
  if (heading && document.activeElement !== document.body) heading.focus();
}

// --- listening ---------------------------------------------------------------------------------

function renderStatus() {
  const { state: listenState, reason, retryInS, warning } = listener.status();
  const listening = listenState === ListenState.LISTENING && !warning;
  const otherTab = !listening && listenState === ListenState.OFF
    && performance.now() - state.otherTabListeningAt < OTHER_TAB_S * 1000;
  const panel = $("#listen-status");
  panel.dataset.listening = String(listening);
  $("#listen-title").textContent = listening ? t("listen.on.title") : t("listen.off.title");
  $("#listen-text").textContent = listening ? t("listen.on.text") : t("listen.off.text");
  const why = warning || reason;
  $("#listen-reason").textContent = listening ? "" : otherTab ? t("listen.other_tab") : why ? t(`listen.reason.${why}`, { s: retryInS }) : "";
  const running = [ListenState.CONNECTING, ListenState.LISTENING, ListenState.RECONNECTING].includes(listenState);
  show($("#listen-start"), !running);
  show($("#listen-stop"), running);
  const conn = listenState === ListenState.LISTENING ? "listening"
    : listenState === ListenState.RECONNECTING ? (reason === "offline" ? "offline" : "reconnecting")
    : listenState === ListenState.CONNECTING ? "connecting" : "idle";
  const pill = $("#conn");
  pill.dataset.conn = conn;
  pill.textContent = t(`conn.${conn}`, { s: retryInS });
  show($("#wakelock-warning"), listenState === ListenState.LISTENING && !listener.wakeLockHeld());
  document.body.dataset.listening = String(listening);
  if (!listening) {
    loudest = 0;
    scheduleDraw();
    if (listenState !== ListenState.LISTENING) state.scores = null;
    renderScores();
  }
  if (running) sessionStorage.setItem(LISTENING_KEY, "1");
  else if (listenState === ListenState.OFF || reason === "replaced" || reason === "signed_out") sessionStorage.removeItem(LISTENING_KEY);
}

let loudest = 0;
let drawTimer = null;
let lastLevelStep = -1;
function renderLevel(rms) {
  loudest = Math.max(loudest, rms);
  scheduleDraw();
}

function scheduleDraw() {
  if (drawTimer !== null || document.hidden) return; // nobody sees it: draw when shown again
  drawTimer = setTimeout(() => {
    drawTimer = null;
    requestAnimationFrame(draw);
  }, DRAW_MS);
}

function draw() {
  // -60 dBFS .. 0 dBFS over the bar, in 40 steps.
  const db = loudest > 0 ? 20 * Math.log10(loudest) : -100;
  loudest = 0;
  const step = Math.round(40 * Math.max(0, Math.min(1, (db + 60) / 60)));
  if (step !== lastLevelStep) {
    lastLevelStep = step;
    $("#level-bar").style.transform = `scaleX(${step / 40})`;
    $("#level").setAttribute("aria-valuenow", String(Math.round((step / 40) * 100)));
  }
  if (scoresChanged) renderScores();
}

function streamMessage(message) {
  if (message.type === "ready") {
    state.classes = message.classes;
    localStorage.setItem(CLASSES_KEY, JSON.stringify(message.classes));
    buildScores();
  } else if (message.type === "scores") {
    state.scores = message.top;
    state.tags = message.tags || null;
    scoresChanged = true;
    scheduleDraw();
  } else if (message.type === "detection" || message.type === "incident") {
    tracker.fromStream(message);
  }
}

function buildScores() {
  const list = $("#scores");
  if (!state.classes) return;
  list.replaceChildren(...state.classes.map((cls) => {
    const [label, other] = bilingual(cls);
    return h("li", { dataset: { class: cls.key } },
      h("span", { class: "score-label" }, label, h("span", { class: "other-lang" }, other)),
      h("span", { class: "score-bar", "aria-hidden": "true" }, h("span", { class: "score-fill" })),
      h("span", { class: "score-value" }, "–"));
  }));
}

let scoresChanged = false;
function renderScores() {
  scoresChanged = false;
  const list = $("#scores");
  if (!list.children.length) buildScores();
  const scores = new Map((state.scores || []).map((s) => [s.class, s.score]));
  for (const row of list.children) {
    const score = scores.get(row.dataset.class);
    const text = score === undefined ? "–" : `${Math.round(score * 100)}%`;
    const value = row.querySelector(".score-value");
    if (value.textContent === text) continue; // unchanged: nothing to draw
    value.textContent = text;
    row.querySelector(".score-fill").style.transform = `scaleX(${(score ?? 0).toFixed(2)})`;
    const high = String((score ?? 0) >= 0.5 && row.dataset.class !== "normal");
    if (row.dataset.high !== high) row.dataset.high = high;
  }
  show($("#scores-none"), !state.scores);
  const tags = state.scores && state.tags ? state.tags.slice(0, 5) : [];
  show($("#tags-section"), tags.length > 0);
  const rows = tagRows();
  tags.forEach((tag, i) => {
    setText(rows[i].firstChild, tag.label);
    setText(rows[i].lastChild, `${Math.round(tag.score * 100)}%`);
  });
  for (let i = 0; i < rows.length; i++) show(rows[i], i < tags.length);
}

// Five rows made once, their text changed in place: no layout beyond the changed text.
function tagRows() {
  const list = $("#tags");
  if (!list.children.length) {
    list.append(...Array.from({ length: 5 }, () => h("li", {}, h("span", {}), h("span", { class: "score-value" }))));
  }
  return list.children;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

async function startListening() {
  alertView.sound.prime(); // from this gesture, so the alert can sound later
  await listener.start();
}

$("#listen-start").addEventListener("click", startListening);
// After a reload listening resumes by itself; the first touch anywhere lets the chime play.
for (const kind of ["pointerdown", "keydown"]) {
  document.addEventListener(kind, () => alertView.sound.prime(), { once: true, capture: true });
}
$("#listen-stop").addEventListener("click", () => {
  if (confirm(t("listen.stop.confirm"))) listener.stop();
});

// Another tab of this browser that listens says so every 2 s: this one is then not "NOT listening".
if (tabs) {
  tabs.onmessage = () => {
    const was = performance.now() - state.otherTabListeningAt < OTHER_TAB_S * 1000;
    state.otherTabListeningAt = performance.now();
    if (!was) renderStatus();
  };
  setInterval(() => {
    if (listener.state === ListenState.LISTENING) tabs.postMessage("listening");
    else if (state.otherTabListeningAt && performance.now() - state.otherTabListeningAt > OTHER_TAB_S * 1000) {
      state.otherTabListeningAt = 0;
      renderStatus();
    }
  }, 2000);
}

// --- registration -------------------------------------------------------------------------------

$("#register-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const status = $("#register-status");
  if (!form.reportValidity()) return; // the browser says which field, in its own language
  if (!form.elements.consent_recording.checked) {
    status.textContent = t("consent.recording.required");
    form.elements.consent_recording.focus();
    return;
  }
  const key = $("#enrolment-key").value.trim();
  status.textContent = "…";
  try {
    const credentials = await api("POST", "/v1/devices", readProfileForm(form, true), {
      auth: false, headers: key ? { "X-Hearo-Enrolment-Key": key } : {},
    });
    setToken(credentials.token);
    state.device = await api("GET", "/v1/devices/me");
    status.textContent = "";
    location.hash = "#listen";
    route("listen");
    $("#listen-reason").textContent = t("register.done");
    tracker.poll();
  } catch (error) {
    if (error.code === "enrolment_key_required" || error.code === "invalid_enrolment_key") {
      show($("#enrolment"), true);
      $("#enrolment-key").focus();
      status.textContent = t("register.enrolment.needed");
    } else {
      status.textContent = t("error.generic", { message: error.message });
    }
  }
});

// --- start --------------------------------------------------------------------------------------

$("#lang-switch").addEventListener("click", () => setLanguage(language() === "ko" ? "en" : "ko", true));
onLanguage(() => {
  buildScores();
  renderScores();
  renderStatus();
  if (tracker.current) alertView.render(tracker.current);
  const view = VIEWS.find((v) => !$(`#view-${v}`).hidden);
  if (view === "history") historyView.load();
  if (view === "register") buildProfileForm($("#register-form"), null);
  if (view === "settings" && state.device) settingsView.show(state.device);
});
window.addEventListener("hashchange", () => route(location.hash.slice(1)));
document.addEventListener("visibilitychange", () => {
  scoresChanged = true;
  scheduleDraw();
});

async function main() {
  await setLanguage(chooseLanguage());
  buildScores();
  renderStatus();
  if (token()) {
    try {
      state.device = await api("GET", "/v1/devices/me");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) setToken(null);
    }
  }
  route(location.hash.slice(1) || "listen");
  if (!token()) return;
  tracker.start();
  if (resumeListening) listener.start(); // it was listening before the reload
}

main();
