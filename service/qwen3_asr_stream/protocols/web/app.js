// Live captions: microphone (or a file) -> AudioWorklet -> 16-bit PCM at 24 kHz -> /v1/realtime
// (OpenAI Realtime transcription events). Provisional text is the latest interim of the
// utterance in progress (the server's extra fields "stable_text" / "unstable_text");
// each "completed" event becomes a final line with word times on hover.
"use strict";
const RATE = 24000;
const $ = (id) => document.getElementById(id);
const state = { ws: null, ctx: null, source: null, stream: null, items: new Map(), latencies: [] };
window.captionLog = [];  // what the page showed, in order (read by the browser test)

function setStatus(text) { $("status").textContent = text; }

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function connect() {
  const url = new URL("/v1/realtime?intent=transcription", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  const token = $("token").value.trim();
  const protocols = token ? ["realtime", "openai-insecure-api-key." + token] : ["realtime"];
  const ws = new WebSocket(url, protocols);
  return new Promise((resolve, reject) => {
    ws.onopen = () => {
      const language = $("language").value;
      ws.send(JSON.stringify({type: "session.update", session: {
        type: "transcription",
        audio: {input: {format: {type: "audio/pcm", rate: RATE},
                        transcription: {model: "", language: language, update_interval_ms: 500},
                        turn_detection: {type: "server_vad", silence_duration_ms: 600}}},
        include: [...($("words").checked ? ["item.input_audio_transcription.words"] : []),
                  ...($("speakers").checked ? ["item.input_audio_transcription.speakers"] : [])]}}));
      resolve(ws);
    };
    ws.onerror = () => reject(new Error("could not connect (wrong API key, or the server is busy?)"));
    ws.onmessage = (m) => onEvent(JSON.parse(m.data));
    ws.onclose = (e) => { if (state.ws === ws) stop(e.code === 1000 ? "ended" : "closed: " + (e.reason || e.code)); };
  });
}

function onEvent(e) {
  const item = e.item_id ? (state.items.get(e.item_id) || state.items.set(e.item_id, {}).get(e.item_id)) : null;
  switch (e.type) {
    case "session.updated": setStatus("listening"); break;
    case "input_audio_buffer.speech_stopped": item.stoppedAt = performance.now(); break;
    case "conversation.item.input_audio_transcription.delta": showProvisional(e); break;
    case "conversation.item.input_audio_transcription.completed": showFinal(e, item); break;
    case "error": if (!state.finishing) setStatus("error: " + e.error.message); break;
  }
  if (state.finishing && (e.type === "error" || e.type.endsWith("transcription.completed"))) stop(state.finishing);
}

// End the turn in progress (commit) so its final line comes, then stop (at most 5 s later).
function finish(reason) {
  const ws = state.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN || state.finishing) return stop(reason);
  if (state.source) { try { state.source.disconnect(); } catch (_) {} }
  state.finishing = reason;
  setStatus("finishing");
  ws.send(JSON.stringify({type: "input_audio_buffer.commit"}));
  setTimeout(() => { if (state.ws === ws) stop(reason); }, 5000);
}

function showProvisional(e) {
  const p = $("provisional");
  p.textContent = "";
  const stable = document.createElement("span");
  stable.className = "stable";
  stable.textContent = e.stable_text || "";
  p.append(stable, document.createTextNode(e.unstable_text || ""));
  window.captionLog.push({kind: "provisional", item: e.item_id, text: e.text || ""});
}

// The meeting so far, one entry per line shown: {start, end (s), speaker ("" without diarization), text}.
const transcript = [];

function showFinal(e, item) {
  $("provisional").textContent = "";
  if (e.cleared) return;
  const segments = e.segments || [];
  if (segments.length) {
    // Diarization: one line per speaker turn (a change inside the utterance splits it).
    segments.forEach((s) => showLine(e, item, s.text, s.speaker, s.start, s.end, []));
  } else {
    showLine(e, item, e.transcript, "", e.audio_start_ms / 1000, e.audio_end_ms / 1000, e.words || []);
  }
}

function showLine(e, item, text, speaker, start, end, words) {
  transcript.push({start: start, end: end, speaker: speaker, text: text});
  const line = document.createElement("p");
  line.className = "final";
  line.dataset.item = e.item_id;
  line.dataset.startMs = Math.round(start * 1000);
  if (speaker) {
    const who = document.createElement("span");
    who.className = "speaker";
    who.textContent = `Speaker ${speaker}: `;
    line.append(who);
  }
  if (words.length) {
    words.forEach((w, i) => {
      const span = document.createElement("span");
      span.className = "word";
      span.textContent = w.word;
      span.title = `${w.start.toFixed(2)}-${w.end.toFixed(2)} s`;
      line.append(span, document.createTextNode(i + 1 < words.length ? " " : ""));
    });
  } else {
    line.append(document.createTextNode(text));
  }
  // Once per item (a diarized final shows a line per speaker turn).
  const clientMs = item && item.stoppedAt && !item.shown ? Math.round(performance.now() - item.stoppedAt) : null;
  if (item) item.shown = true;
  const meta = document.createElement("span");
  meta.className = "meta";
  const at = start.toFixed(1);
  meta.textContent = `${at} s | server ${e.latency_ms} ms` + (clientMs !== null ? ` | seen ${clientMs} ms` : "");
  line.append(meta);
  $("finals").append(line);
  if (clientMs !== null) state.latencies.push(clientMs);
  const sorted = [...state.latencies].sort((a, b) => a - b);
  const p50 = sorted.length ? sorted[Math.floor(sorted.length / 2)] : "-";
  $("stats").textContent = `latency after the end of speech: last ${clientMs ?? "-"} ms, median ${p50} ms ` +
    `(server ${e.latency_ms} ms) over ${sorted.length} lines`;
  window.captionLog.push({kind: "final", item: e.item_id, text: text, start_ms: Math.round(start * 1000),
                         speaker: speaker});
}

// Downloads of the transcript so far: plain text, SRT or WebVTT, with "Speaker X:" when known.
function stamp(seconds, separator) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, w) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3600000), 2)}:${pad(Math.floor(ms / 60000) % 60, 2)}:` +
    `${pad(Math.floor(ms / 1000) % 60, 2)}${separator}${pad(ms % 1000, 3)}`;
}

function transcriptAs(format) {
  const said = (t) => (t.speaker ? `Speaker ${t.speaker}: ` : "") + t.text;
  if (format === "srt") {
    return transcript.map((t, i) => `${i + 1}\n${stamp(t.start, ",")} --> ${stamp(t.end, ",")}\n${said(t)}\n\n`).join("");
  }
  if (format === "vtt") {
    return "WEBVTT\n\n" + transcript.map((t) =>
      `${stamp(t.start, ".")} --> ${stamp(t.end, ".")}\n${t.speaker ? `<v Speaker ${t.speaker}>` : ""}${t.text}\n\n`).join("");
  }
  return transcript.map((t) => `[${stamp(t.start, ".")}] ${said(t)}\n`).join("");
}
window.transcriptAs = transcriptAs;

document.querySelectorAll("#downloads button").forEach((button) => button.addEventListener("click", () => {
  const format = button.dataset.format;
  const types = {txt: "text/plain", srt: "application/x-subrip", vtt: "text/vtt"};
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([transcriptAs(format)], {type: types[format]}));
  link.download = `transcript.${format}`;
  link.click();
  URL.revokeObjectURL(link.href);
}));

async function start(fromFile) {
  $("start").disabled = true; $("file").disabled = true; $("stop").disabled = false;
  setStatus("connecting");
  try {
    const ctx = new AudioContext({sampleRate: RATE});
    await ctx.audioWorklet.addModule("/web/capture-worklet.js");
    const node = new AudioWorkletNode(ctx, "capture-processor");
    let source;
    if (fromFile) {
      const decoded = await ctx.decodeAudioData(await fromFile.arrayBuffer());
      source = ctx.createBufferSource();
      source.buffer = decoded;
      source.onended = () => setTimeout(() => finish("file done"), 300);
    } else {
      state.stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: false,
                                                                        noiseSuppression: false, autoGainControl: false}});
      source = ctx.createMediaStreamSource(state.stream);
    }
    state.ws = await connect();
    node.port.onmessage = (m) => {
      if (state.ws && state.ws.readyState === WebSocket.OPEN)
        state.ws.send(JSON.stringify({type: "input_audio_buffer.append", audio: base64(m.data)}));
    };
    source.connect(node);
    Object.assign(state, {ctx, source});
    if (fromFile) source.start();
  } catch (err) {
    stop("error: " + err.message);
  }
}

function stop(reason) {
  const ws = state.ws;
  state.ws = null;
  if (state.source) { try { state.source.disconnect(); } catch (_) {} }
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  if (state.ctx) state.ctx.close();
  if (ws && ws.readyState === WebSocket.OPEN) ws.close(1000);
  Object.assign(state, {ctx: null, source: null, stream: null, finishing: null});
  $("start").disabled = false; $("file").disabled = false; $("stop").disabled = true;
  setStatus(typeof reason === "string" ? reason : "stopped");
}

$("start").onclick = () => start(null);
$("stop").onclick = () => finish("stopped");
$("file").onchange = () => { if ($("file").files[0]) start($("file").files[0]); };
