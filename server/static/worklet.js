// AudioWorklet: microphone blocks (128 float samples at the AudioContext's rate) -> 16 kHz PCM16 chunks of
// ~100 ms, posted to the page as ArrayBuffers. Resampling: a windowed-sinc low-pass (anti-aliasing below 7.2 kHz)
// followed by linear interpolation at the 16 kHz sample positions; the filter and position carry across blocks.
const TARGET_RATE = 16000;
const CHUNK_SAMPLES = 1600; // 100 ms at 16 kHz

function lowPassTaps(ratio) {
  if (ratio <= 1) return new Float32Array([1]);
  const n = 63, cutoff = 0.45 / ratio, taps = new Float32Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const m = i - (n - 1) / 2;
    const sinc = m === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * m) / (Math.PI * m);
    const hann = 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / (n - 1));
    taps[i] = sinc * hann;
    sum += taps[i];
  }
  for (let i = 0; i < n; i++) taps[i] /= sum;
  return taps;
}

class PCM16Resampler extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample (sampleRate: the context's rate)
    this.taps = lowPassTaps(this.ratio);
    this.history = new Float32Array(this.taps.length); // last inputs, newest at the end
    this.filtered = []; // low-passed input samples not yet passed by the output position
    this.position = 0; // where the next output sample falls, in units of `filtered`
    this.out = new Int16Array(CHUNK_SAMPLES);
    this.outLength = 0;
    this.port.onmessage = (event) => { if (event.data === "flush") this.flush(); };
  }

  push(sample) {
    const clipped = Math.max(-1, Math.min(1, sample));
    this.out[this.outLength++] = clipped < 0 ? clipped * 32768 : clipped * 32767;
    if (this.outLength === CHUNK_SAMPLES) this.flush();
  }

  flush() {
    if (this.outLength === 0) return;
    const chunk = this.out.slice(0, this.outLength);
    this.port.postMessage(chunk.buffer, [chunk.buffer]);
    this.outLength = 0;
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no input yet (or the track ended): keep the node alive
    const taps = this.taps, history = this.history, n = taps.length;
    for (let i = 0; i < channel.length; i++) {
      history.copyWithin(0, 1);
      history[n - 1] = channel[i];
      let y = 0;
      for (let k = 0; k < n; k++) y += taps[k] * history[k];
      this.filtered.push(y);
    }
    while (this.position + 1 < this.filtered.length) {
      const i = Math.floor(this.position), frac = this.position - i;
      this.push(this.filtered[i] * (1 - frac) + this.filtered[i + 1] * frac);
      this.position += this.ratio;
    }
    // Drop what the output position has passed (it may point past the end: into samples still to come).
    const consumed = Math.min(Math.floor(this.position), this.filtered.length);
    this.filtered = this.filtered.slice(consumed);
    this.position -= consumed;
    return true;
  }
}

registerProcessor("pcm16-resampler", PCM16Resampler);
