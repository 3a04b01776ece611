// AudioWorklet processor: the microphone's float samples as PCM16 (little-endian, mono) at the
// AudioContext's rate, in frames of `frameMs`, posted to the page with their RMS and peak
// (the level meter), so the main thread does no per-sample work. docs/protocol.md: binary frames.

class PcmCaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const frameMs = (options.processorOptions && options.processorOptions.frameMs) || 100;
    this.frameSamples = Math.round((sampleRate * frameMs) / 1000);
    this.frame = new Int16Array(this.frameSamples);
    this.filled = 0;
    this.sumSquares = 0;
    this.peak = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const input = inputs[0];
    // No channel: the source is gone (a track that ended). Send nothing rather than invent
    // silence: the page and the gateway must see that no audio is coming.
    if (!input || input.length === 0) return this.running;
    const samples = input[0];
    let i = 0;
    while (i < samples.length) {
      const take = Math.min(samples.length - i, this.frameSamples - this.filled);
      for (let j = 0; j < take; j++) {
        let s = samples[i + j];
        if (s > 1) s = 1;
        else if (s < -1) s = -1;
        this.sumSquares += s * s;
        const a = s < 0 ? -s : s;
        if (a > this.peak) this.peak = a;
        this.frame[this.filled + j] = s < 0 ? s * 0x8000 : s * 0x7fff;
      }
      this.filled += take;
      i += take;
      if (this.filled === this.frameSamples) {
        const rms = Math.sqrt(this.sumSquares / this.frameSamples);
        const buffer = this.frame.buffer;
        this.port.postMessage({ pcm: buffer, rms, peak: this.peak }, [buffer]);
        this.frame = new Int16Array(this.frameSamples);
        this.filled = 0;
        this.sumSquares = 0;
        this.peak = 0;
      }
    }
    return this.running;
  }
}

registerProcessor("pcm-capture", PcmCaptureProcessor);
