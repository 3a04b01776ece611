// Listening: the microphone through an AudioWorklet (pcm-worklet.js) to /v1/stream
// (docs/protocol.md), with a screen wake lock, and reconnection with backoff after a drop.
//
// The Listener's state is one of ListenState; `reason` says why it is not listening. The page
// shows "listening" only in LISTENING with no warning: a dead socket, a muted microphone or a
// gateway that has stopped classifying is never shown as a quiet room.

export const ListenState = Object.freeze({
  OFF: "off", // the person stopped it (or never started)
  CONNECTING: "connecting",
  LISTENING: "listening",
  RECONNECTING: "reconnecting", // a drop; retrying after `retryInS`
  BLOCKED: "blocked", // cannot go on without the person (microphone denied, signed out, ...)
});

const RATES = [8000, 16000, 22050, 44100, 48000];
// What the gateway asks for (GET /v1/stream/format): the lowest rate that keeps all the model
// hears, in quarter-second frames. Without an answer, the browser's own rate loses nothing.
const DEFAULT_FRAME_MS = 250;
const RENDER_FRAMES = 4096;
const BACKOFF_S = [1, 2, 4, 8, 15, 30];
const SILENT_S = 5; // this long of digital zeros: a muted or dead microphone
const NO_SCORES_S = 10; // scores come every second or so; none for this long: not being checked
const DEAD_SOCKET_S = 20; // nothing at all from the gateway for this long: the network is gone
const MAX_BUFFERED_BYTES = 512 * 1024;

export class Listener {
  /**
   * @param {object} hooks
   *   token(): the device token; location(): {lat, lon, accuracy_m} or null;
   *   onStatus(status): {state, reason, retryInS, warning}; onMessage(msg): every gateway message;
   *   onLevel(rms, peak): each frame's level; scoresPerSecond: at most this many scores messages.
   */
  constructor(hooks) {
    this.hooks = hooks;
    this.state = ListenState.OFF;
    this.reason = "stopped";
    this.warning = null;
    this.retryInS = 0;
    this.ws = null;
    this.attempt = 0;
    this.context = null;
    this.stream = null;
    this.node = null;
    this.wakeLock = null;
    this.silentFrames = 0;
    this.frameMs = DEFAULT_FRAME_MS;
    this.lastMessageAt = 0;
    this.lastScoresAt = 0;
    this.readyAt = 0;
    this.timers = new Set();
    this.onVisibility = () => this.visibilityChanged();
    this.onOnline = () => this.networkChanged();
  }

  status() {
    return { state: this.state, reason: this.reason, retryInS: this.retryInS, warning: this.warning };
  }

  setState(state, reason = null) {
    this.state = state;
    this.reason = reason;
    if (state !== ListenState.LISTENING) this.warning = null;
    this.hooks.onStatus(this.status());
  }

  setWarning(warning) {
    if (this.warning === warning) return;
    this.warning = warning;
    this.hooks.onStatus(this.status());
  }

  /** Start from a user gesture (the Start button) or, after a reload, on its own. */
  async start() {
    if (this.state !== ListenState.OFF && this.state !== ListenState.BLOCKED) return;
    if (!window.isSecureContext || !navigator.mediaDevices) return this.setState(ListenState.BLOCKED, "insecure");
    if (typeof AudioWorkletNode === "undefined") return this.setState(ListenState.BLOCKED, "unsupported");
    this.setState(ListenState.CONNECTING, "connecting");
    try {
      await this.openMicrophone();
    } catch (error) {
      this.closeMicrophone();
      const denied = error && (error.name === "NotAllowedError" || error.name === "SecurityError");
      return this.setState(ListenState.BLOCKED, denied ? "mic_denied" : "mic_ended");
    }
    if (this.context.state !== "running") {
      // Autoplay policy: a context started without a gesture stays suspended until one.
      this.closeMicrophone();
      return this.setState(ListenState.BLOCKED, "suspended");
    }
    document.addEventListener("visibilitychange", this.onVisibility);
    window.addEventListener("online", this.onOnline);
    window.addEventListener("offline", this.onOnline);
    await this.keepAwake();
    this.attempt = 0;
    this.tokenAtStart = this.hooks.token();
    this.every(1000, () => this.watch());
    this.connect();
  }

  /** Stop: `stop` to the gateway (it judges the end of the audio), then close. Cancels nothing. */
  stop(reason = "stopped") {
    const ws = this.ws;
    this.ws = null;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "stop" }));
      setTimeout(() => ws.close(1000), 2000); // `stopped` first, if it comes
    } else if (ws) {
      ws.close();
    }
    if (ws) ws.onclose = null;
    for (const timer of this.timers) clearInterval(timer), clearTimeout(timer);
    this.timers.clear();
    document.removeEventListener("visibilitychange", this.onVisibility);
    window.removeEventListener("online", this.onOnline);
    window.removeEventListener("offline", this.onOnline);
    this.closeMicrophone();
    if (this.wakeLock) this.wakeLock.release().catch(() => {});
    this.wakeLock = null;
    this.setState(reason === "stopped" ? ListenState.OFF : ListenState.BLOCKED, reason);
  }

  async captureFormat() {
    try {
      const response = await fetch("/v1/stream/format", { cache: "no-store" });
      if (response.ok) {
        const format = await response.json();
        if (RATES.includes(format.sample_rate) && format.frame_ms > 0) return format;
      }
    } catch {
      // offline or an older gateway: capture at the browser's rate
    }
    return { sample_rate: null, frame_ms: DEFAULT_FRAME_MS };
  }

  async openMicrophone() {
    const format = await this.captureFormat();
    this.frameMs = format.frame_ms;
    this.stream = await navigator.mediaDevices.getUserMedia({
      // Raw sound: noise suppression would remove the alarm tones Hear-o listens for.
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: false,
    });
    for (const track of this.stream.getAudioTracks()) {
      track.addEventListener("ended", () => this.stop("mic_ended"));
    }
    // Nothing is played, so (bench/bench_web_client.py): no output device at all (`sinkId`
    // none: the browser's audio service keeps no output stream), "playback" latency and a render
    // quantum of 4096 frames instead of 128 (where the browser takes `renderSizeHint`), which
    // wake the audio thread and the worklet far less often, and the gateway's rate (16 kHz for
    // the default model), a third of 48 kHz's samples for the worklet and the socket.
    const options = { latencyHint: "playback", renderSizeHint: RENDER_FRAMES, sinkId: { type: "none" } };
    if (format.sample_rate) options.sampleRate = format.sample_rate;
    try {
      this.context = new AudioContext(options);
    } catch {
      this.context = new AudioContext({ latencyHint: "playback" }); // a browser that takes none of them
    }
    if (!RATES.includes(this.context.sampleRate)) {
      await this.context.close();
      this.context = new AudioContext({ ...options, sampleRate: 48000 });
    }
    await this.context.audioWorklet.addModule("/web/js/pcm-worklet.js");
    const source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "pcm-capture", {
      numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1, channelCountMode: "explicit",
      processorOptions: { frameMs: this.frameMs },
    });
    this.node.port.onmessage = (event) => this.frame(event.data);
    source.connect(this.node);
    if (this.context.state !== "running") await this.context.resume().catch(() => {});
  }

  closeMicrophone() {
    if (this.node) this.node.port.postMessage("stop"), this.node.disconnect();
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.context) this.context.close().catch(() => {});
    this.node = this.stream = this.context = null;
  }

  async keepAwake() {
    if (!("wakeLock" in navigator) || document.visibilityState !== "visible") return;
    try {
      this.wakeLock = await navigator.wakeLock.request("screen");
      this.wakeLock.addEventListener("release", () => (this.wakeLock = null));
    } catch {
      this.wakeLock = null; // battery saver, or not allowed: the page says so (wakeLockHeld)
    }
  }

  wakeLockHeld() {
    return this.wakeLock !== null;
  }

  visibilityChanged() {
    if (document.visibilityState === "visible" && !this.wakeLock) this.keepAwake();
  }

  networkChanged() {
    if (!navigator.onLine) {
      if (this.ws) this.ws.close(4000, "offline");
    } else if (this.state === ListenState.RECONNECTING) {
      this.retryNow();
    }
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/v1/stream`);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.setState(this.attempt === 0 ? ListenState.CONNECTING : ListenState.RECONNECTING, "connecting");
    ws.onopen = () => {
      const start = {
        type: "start", token: this.hooks.token(), encoding: "pcm_s16le",
        sample_rate: this.context.sampleRate, channels: 1, frame_ms: this.frameMs,
        scores_per_second: this.hooks.scoresPerSecond,
      };
      const where = this.hooks.location();
      if (where) start.location = where;
      ws.send(JSON.stringify(start));
      this.lastMessageAt = performance.now();
    };
    ws.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      this.lastMessageAt = performance.now();
      const message = JSON.parse(event.data);
      if (message.type === "ready") {
        this.readyAt = this.lastScoresAt = performance.now();
        this.silentFrames = 0;
        this.setState(ListenState.LISTENING, null);
      } else if (message.type === "scores") {
        this.lastScoresAt = performance.now();
        if (this.warning === "no_scores" || this.warning === "not_checking") this.setWarning(null);
      } else if (message.type === "error" && message.code === "inference_unavailable" && !message.fatal) {
        this.setWarning("not_checking");
      }
      this.hooks.onMessage(message);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.closed(event.code);
    };
  }

  closed(code) {
    if (code === 4409) return this.stop("replaced"); // do not fight the newer session
    if (code === 4001) {
      // Rotated in this browser → go on with the new token; elsewhere → signed out. The close
      // may come before the rotation's answer has stored the new token: look again shortly.
      this.setState(ListenState.CONNECTING, "connecting");
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.state !== ListenState.CONNECTING || this.ws) return;
        if (this.hooks.token() && this.hooks.token() !== this.tokenAtStart) {
          this.tokenAtStart = this.hooks.token();
          this.connect();
        } else {
          this.stop("signed_out");
        }
      }, 2000);
      this.timers.add(timer);
      return;
    }
    if (this.readyAt && performance.now() - this.readyAt > 30_000) this.attempt = 0; // it had been working
    this.readyAt = 0;
    const base = BACKOFF_S[Math.min(this.attempt, BACKOFF_S.length - 1)];
    this.attempt += 1;
    this.retryInS = Math.max(1, Math.round(base * (0.75 + Math.random() * 0.25)));
    this.setState(ListenState.RECONNECTING, navigator.onLine ? "reconnecting" : "offline");
    this.retryAt = performance.now() + this.retryInS * 1000;
  }

  retryNow() {
    this.retryAt = 0;
    this.watch();
  }

  /** Once a second: reconnect when due, and the watchdogs. */
  watch() {
    const now = performance.now();
    if (this.state === ListenState.RECONNECTING && !this.ws) {
      const left = Math.ceil((this.retryAt - now) / 1000);
      if (left <= 0 && navigator.onLine) {
        this.tokenAtStart = this.hooks.token();
        this.connect();
      } else if (left !== this.retryInS) {
        this.retryInS = Math.max(0, left);
        this.setState(ListenState.RECONNECTING, navigator.onLine ? "reconnecting" : "offline");
      }
      return;
    }
    if (!this.ws) return;
    if (now - this.lastMessageAt > DEAD_SOCKET_S * 1000) {
      this.ws.close(4000, "no answer"); // a half-open connection: start afresh
      return;
    }
    if (this.state === ListenState.LISTENING) {
      if (this.context && this.context.state !== "running") this.setWarning("suspended");
      else if (this.silentFrames * this.frameMs >= SILENT_S * 1000) this.setWarning("mic_silent");
      else if (now - this.lastScoresAt > NO_SCORES_S * 1000) this.setWarning(this.warning === "not_checking" ? "not_checking" : "no_scores");
      else if (this.warning === "mic_silent" || this.warning === "suspended") this.setWarning(null);
    }
  }

  frame({ pcm, rms, peak }) {
    this.silentFrames = peak === 0 ? this.silentFrames + 1 : 0;
    this.hooks.onLevel(rms, peak);
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== ListenState.LISTENING) return;
    // A stalled network: drop audio rather than queue it without bound; the watchdog reconnects.
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return;
    ws.send(pcm);
  }

  every(ms, fn) {
    const id = setInterval(fn, ms);
    this.timers.add(id);
  }
}
