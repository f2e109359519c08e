"""Accuracy of streaming on real speech: WER (CER for Chinese, Japanese, Korean) of

* ``offline``: offline transcription of the whole recording (``Transcriber``, what
  ``qwen3-asr-stream transcribe`` prints);
* ``finals``: our streamed finals (the recording streamed through the engine as one utterance);
* ``last interim``: the last interim before each final;
* ``official policy``: the official streaming policy on the same audio and weights (2 s
  chunks, each re-decoding all audio so far after the previous text minus its last 5 tokens,
  no prefix for the first ``--policy-unfixed`` chunks; 4 as the Qwen3-ASR report measured,
  the ``qwen-asr`` package's default is 2), then its tail;

plus interim latency (from the moment the audio an interim covers was pushed to its result;
the first partial apart), and how often the final revised text an interim had shown as stable.

Streaming: audio is pushed in ``--chunk-ms`` pieces; by default on a simulated clock (after
each piece the engine finishes the work due, as an engine that keeps up with real time
does), with ``--realtime`` at wall-clock pace. One recording at a time, one utterance each
(no VAD: a dataset's recordings are single utterances).

Text normalization before scoring (both sides, stated in the README): Unicode NFKC, lower
case, every punctuation character (Unicode category P*) replaced by a space except an
apostrophe between letters, whitespace collapsed; for CER all whitespace is removed too.
Corpus-level rates (total errors over total reference words or characters), with jiwer.

    python benchmarks/bench_accuracy.py --model DIR --folder DIR                 # name.wav + name.txt, or refs.tsv
    python benchmarks/bench_accuracy.py --model Qwen/Qwen3-ASR-0.6B --dataset openslr/librispeech_asr \\
        --config other --split test --language English --device cuda --dtype bfloat16
    python benchmarks/bench_accuracy.py --model DIR --dataset google/fleurs --config en_us --split test --language English
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from common import greedy_tokens, percentile, print_table, write_results

import numpy as np

from qwen3_asr_stream.engine.options import PolicyOptions

CER_LANGUAGES = {"Chinese", "Cantonese", "Japanese", "Korean"}
TEXT_COLUMNS = ("text", "raw_transcription", "transcription", "sentence", "normalized_text")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
SAMPLE_RATE = 16000


@dataclass
class Recording:
    name: str
    audio: np.ndarray  # 16 kHz mono float32
    reference: str


@dataclass
class Streamed:
    final: str
    last_interim: str
    interims: int
    latencies_s: list[float]  # per interim: audio pushed -> result
    stable_revised: bool  # the final does not start with the last stable text shown
    stable_seen: bool  # some interim showed stable text
    compute_s: list[float] = field(default_factory=list)


# -- data ---------------------------------------------------------------------------------------


def folder_recordings(folder: Path) -> Iterator[Recording]:
    """``refs.tsv`` (``file<TAB>reference`` per line) if present, else every audio file with a
    ``.txt`` of the same name beside it."""
    from qwen3_asr_stream.audio.files import read_audio

    tsv = folder / "refs.tsv"
    if tsv.exists():
        pairs = []
        for n, line in enumerate(tsv.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                name, sep, text = line.partition("\t")
                if not sep:
                    raise SystemExit(f"{tsv}:{n}: expected 'file<TAB>reference text'")
                pairs.append((folder / name, text))
    else:
        pairs = [(p, p.with_suffix(".txt").read_text(encoding="utf-8")) for p in sorted(folder.iterdir())
                 if p.suffix.lower() in AUDIO_EXTENSIONS and p.with_suffix(".txt").exists()]
    if not pairs:
        raise SystemExit(f"{folder}: no refs.tsv and no audio file with a .txt reference beside it")
    for path, text in pairs:
        yield Recording(path.name, read_audio(path), text.strip())


def dataset_recordings(name: str, config: str | None, split: str, text_column: str | None) -> Iterator[Recording]:
    """A Hugging Face dataset, streamed (``pip install datasets``)."""
    try:
        import datasets
    except ImportError:
        raise SystemExit("--dataset needs the datasets package: pip install datasets") from None
    from qwen3_asr_stream.audio.files import to_mono_16k

    data = datasets.load_dataset(name, config, split=split, streaming=True)
    for n, row in enumerate(data):
        column = text_column or next((c for c in TEXT_COLUMNS if c in row), None)
        if column is None:
            raise SystemExit(f"no reference text column among {list(row)}: pass --text-column")
        audio = row["audio"]
        yield Recording(str(row.get("id", n)), to_mono_16k(np.asarray(audio["array"]), audio["sampling_rate"]),
                        row[column].strip())


# -- scoring ------------------------------------------------------------------------------------


def normalize(text: str, characters: bool) -> str:
    """NFKC, lower case, punctuation to spaces (an apostrophe between letters kept), whitespace
    collapsed; with ``characters`` (CER) all whitespace removed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\w)'(?=\w)", "\u0000", text)  # keep "don't", "l'homme"
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text).replace("\u0000", "'")
    return "".join(text.split()) if characters else " ".join(text.split())


def error_rate(references: list[str], hypotheses: list[str], characters: bool) -> dict:
    """Corpus-level WER (or CER): errors over reference units, recordings with an empty
    normalized reference left out."""
    import jiwer

    pairs = [(normalize(r, characters), normalize(h, characters)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return {"rate": float("nan"), "units": 0}
    refs, hyps = [r for r, _ in pairs], [h for _, h in pairs]
    if characters:
        out = jiwer.process_characters(refs, hyps)
        rate = out.cer
    else:
        out = jiwer.process_words(refs, hyps)
        rate = out.wer
    units = out.hits + out.substitutions + out.deletions
    return {"rate": rate, "units": units, "substitutions": out.substitutions, "deletions": out.deletions,
            "insertions": out.insertions}


# -- the systems --------------------------------------------------------------------------------


def stream(engine, recording: Recording, language: str | None, chunk_s: float, realtime: bool) -> Streamed:
    """One recording through the engine as one utterance; interims and the final."""
    from qwen3_asr_stream.engine.options import UtteranceOptions

    results, arrived, pushed = [], [], []  # pushed: (samples so far, time)
    final = threading.Event()

    def callback(result):
        arrived.append(time.perf_counter())
        results.append(result)
        if result.is_final:
            final.set()

    uid = engine.open(UtteranceOptions(language=language), callback)
    step = int(chunk_s * SAMPLE_RATE)
    started = time.perf_counter()
    for k, start in enumerate(range(0, len(recording.audio), step)):
        if realtime:
            delay = started + k * chunk_s - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        engine.push(uid, recording.audio[start : start + step])
        pushed.append((min(start + step, len(recording.audio)), time.perf_counter()))
        if not realtime:
            engine.core.wait_idle(600)
    engine.finish(uid)
    if not final.wait(600):
        raise RuntimeError(f"{recording.name}: no final within 600 s")
    interims = [(r, t) for r, t in zip(results, arrived) if not r.is_final and not r.error]
    last = results[-1]
    if last.error:
        raise RuntimeError(f"{recording.name}: the engine failed: {last.error}")
    latencies = []
    for r, t in interims:
        due = next(when for samples, when in pushed if samples >= r.audio_samples)
        latencies.append(t - due)
    stable = interims[-1][0].stable_text if interims else ""
    return Streamed(final=last.text, last_interim=interims[-1][0].text if interims else "", interims=len(interims),
                    latencies_s=latencies, stable_revised=bool(stable) and not last.text.startswith(stable),
                    stable_seen=bool(stable), compute_s=[r.compute_s for r, _ in interims])


def official_policy(model, tokenizer, audio: np.ndarray, language: str | None, max_tokens: int, chunk_s: float = 2.0,
                    rollback: int = 5, unfixed: int = 4) -> tuple[str, list[float]]:
    """The official streaming policy (``qwen_asr`` ``streaming_transcribe`` then
    ``finish_streaming_transcribe``) on our model: every ``chunk_s`` all audio so far again,
    after the text so far minus its last ``rollback`` tokens (re-tokenized from the text, as
    the official code does; no prefix for the first ``unfixed`` chunks). Returns the text
    after the last piece and the compute time of each decode."""
    import torch

    from qwen3_asr_stream.text.transcript import parse_output

    raw, chunk, times = "", int(chunk_s * SAMPLE_RATE), []

    def decode(end: int, prefix: str) -> str:
        started = time.perf_counter()
        with torch.inference_mode():
            tokens = greedy_tokens(model, tokenizer, [audio[:end]], [prefix], language, max_tokens)[0]
        times.append(time.perf_counter() - started)
        return prefix + tokenizer.decode(tokens)

    chunks = len(audio) // chunk
    for index in range(chunks):
        prefix = ""
        if index >= unfixed:
            ids, k = tokenizer.encode(raw), rollback
            while True:  # roll back further while the prefix ends inside a character
                end = max(0, len(ids) - k)
                prefix = tokenizer.decode(ids[:end]) if end > 0 else ""
                if "\ufffd" not in prefix or end == 0:
                    break
                k += 1
        raw = decode((index + 1) * chunk, prefix)
    if len(audio) > chunks * chunk or chunks == 0:  # the tail, as finish_streaming_transcribe
        prefix = ""
        if chunks >= unfixed:
            ids = tokenizer.encode(raw)
            prefix = tokenizer.decode(ids[: max(1, len(ids) - rollback)])
        raw = decode(len(audio), prefix)
    return parse_output(raw, language).text, times


# -- the run ------------------------------------------------------------------------------------


def run(args) -> dict:
    import torch

    from qwen3_asr_stream.checkpoint import LoadOptions, load_pretrained
    from qwen3_asr_stream.engine.text_layer import StreamingEngine
    from qwen3_asr_stream.engine.options import EngineOptions
    from qwen3_asr_stream.offline import Transcriber, TranscribeOptions
    from qwen3_asr_stream.text.transcript import normalize_language

    language = normalize_language(args.language) if args.language else None
    characters = args.metric == "cer" if args.metric else language in CER_LANGUAGES
    model, tokenizer = load_pretrained(args.model, LoadOptions(device=args.device, dtype=args.dtype))
    transcriber = Transcriber(model, tokenizer)
    policy = PolicyOptions(update_interval_s=args.interval, max_tokens_final=args.max_tokens,
                           repetition_limit=args.repetition_limit)
    options = EngineOptions(max_batch=1, max_utterances=1, kv_budget_bytes=1 << 40,
                            max_utterance_s=args.max_seconds, policy=policy)
    if args.folder:
        recordings = folder_recordings(Path(args.folder))
    else:
        recordings = dataset_recordings(args.dataset, args.config, args.split, args.text_column)
    rows, skipped = [], 0
    with StreamingEngine(model, tokenizer, options) as engine:
        for recording in recordings:
            if args.limit and len(rows) >= args.limit:
                break
            seconds = len(recording.audio) / SAMPLE_RATE
            if not 0 < seconds <= args.max_seconds:
                skipped += 1
                continue
            offline = transcriber.transcribe([recording.audio], TranscribeOptions(
                language=language, max_new_tokens=args.max_tokens))[0].text
            streamed = stream(engine, recording, language, args.chunk_ms / 1000, args.realtime)
            official, official_s = official_policy(model, tokenizer, recording.audio, language, args.max_tokens,
                                                   unfixed=args.policy_unfixed)
            rows.append({"name": recording.name, "seconds": seconds, "reference": recording.reference,
                         "offline": offline, "final": streamed.final, "last_interim": streamed.last_interim,
                         "official_policy": official, "interims": streamed.interims,
                         "interim_latency_ms": [round(t * 1e3, 2) for t in streamed.latencies_s],
                         "interim_compute_ms": [round(t * 1e3, 2) for t in streamed.compute_s],
                         "official_chunk_ms": [round(t * 1e3, 2) for t in official_s],
                         "stable_seen": streamed.stable_seen, "stable_revised": streamed.stable_revised})
            print(f"{len(rows)}: {recording.name} ({seconds:.1f} s) final: {streamed.final!r}", flush=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    if not rows:
        raise SystemExit("no recording was scored")
    refs = [r["reference"] for r in rows]
    systems = {"offline": "offline", "finals": "final", "last interim": "last_interim",
               f"official policy (2 s, rollback 5, {args.policy_unfixed} unfixed)": "official_policy"}
    rates = {name: error_rate(refs, [r[key] for r in rows], characters) for name, key in systems.items()}
    rates["finals vs offline"] = error_rate([r["offline"] for r in rows], [r["final"] for r in rows], characters)
    latencies = [t for r in rows for t in r["interim_latency_ms"]]
    firsts = [r["interim_latency_ms"][0] for r in rows if r["interim_latency_ms"]]
    official_ms = [t for r in rows for t in r["official_chunk_ms"]]
    with_stable = [r for r in rows if r["stable_seen"]]
    summary = {
        "recordings": len(rows), "skipped": skipped, "audio_s": round(sum(r["seconds"] for r in rows), 1),
        "metric": "CER" if characters else "WER", "rates": rates,
        "interim_latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
                               "first_partial_p50": percentile(firsts, 50), "interims": len(latencies)},
        "official_chunk_ms": {"p50": percentile(official_ms, 50), "p95": percentile(official_ms, 95)},
        "stable_revised_by_final": {"recordings": sum(r["stable_revised"] for r in with_stable),
                                    "of": len(with_stable)},
    }
    return {"options": {k: v for k, v in vars(args).items()}, "summary": summary, "recordings": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder or Hub id")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--folder", help="audio files with name.txt references, or a refs.tsv")
    source.add_argument("--dataset", help="a Hugging Face dataset name (needs: pip install datasets)")
    parser.add_argument("--config", help="the dataset's configuration (LibriSpeech: clean, other; FLEURS: en_us)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--text-column", help=f"default: the first of {', '.join(TEXT_COLUMNS)}")
    parser.add_argument("--language", help="force the language (e.g. English); default: detected")
    parser.add_argument("--metric", choices=["wer", "cer"], help="default: CER for Chinese, Japanese, Korean")
    parser.add_argument("--limit", type=int, default=0, help="score at most this many recordings")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--interval", type=float, default=1.0, help="interim cadence, s (serve's default)")
    parser.add_argument("--chunk-ms", type=float, default=100.0, help="audio per push")
    parser.add_argument("--realtime", action="store_true", help="push at wall-clock pace")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="longer recordings are skipped")
    parser.add_argument("--max-tokens", type=int, default=512, help="token bound of every decode, all systems")
    parser.add_argument("--repetition-limit", type=int, default=PolicyOptions().repetition_limit,
                        help="the engine's loop guard (0 = off, as offline decoding has none)")
    parser.add_argument("--policy-unfixed", type=int, default=4,
                        help="official policy: chunks decoded without a prefix (report: 4; qwen-asr default: 2)")
    parser.add_argument("--name", default="accuracy", help="results file: benchmarks/results/NAME.json")
    parser.add_argument("--out", help="results folder instead of benchmarks/results")
    args = parser.parse_args(argv)
    record = run(args)
    s = record["summary"]
    metric = s["metric"]
    rows = [[name, round(100 * r["rate"], 2), r["units"]] for name, r in s["rates"].items()]
    print_table(f"{metric} (%) over {s['recordings']} recordings, {s['audio_s']} s ({args.model}, {args.dtype}; "
                f"normalized: NFKC, lower case, no punctuation)", ["system", f"{metric} %", "reference units"], rows)
    lat = s["interim_latency_ms"]
    print_table("streaming", ["interim p50 ms", "interim p95 ms", "first partial p50 ms", "interims",
                              "official chunk p50 / p95 ms", "stable text revised by the final"],
                [[lat["p50"], lat["p95"], lat["first_partial_p50"], lat["interims"],
                  f"{s['official_chunk_ms']['p50']:.1f} / {s['official_chunk_ms']['p95']:.1f}",
                  f"{s['stable_revised_by_final']['recordings']} of {s['stable_revised_by_final']['of']} recordings"]])
    write_results(args.name, record, Path(args.out) if args.out else None)


if __name__ == "__main__":
    main()
