// AudioWorklet: the context's mono float samples -> 16-bit PCM pieces of about 40 ms for the main thread.
class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = Math.round(sampleRate * 0.04);
    this.buffer = new Int16Array(this.size);
    this.filled = 0;
  }
  process(inputs) {
    const channels = inputs[0];
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (const c of channels) s += c[i];
      s = Math.max(-1, Math.min(1, s / channels.length));
      this.buffer[this.filled++] = s < 0 ? s * 0x8000 : s * 0x7fff;
      if (this.filled === this.size) {
        this.port.postMessage(this.buffer.buffer, [this.buffer.buffer]);
        this.buffer = new Int16Array(this.size);
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("capture-processor", CaptureProcessor);
