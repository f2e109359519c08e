"""What live diarization costs: the final's latency with it on and off, and the speaker stage per utterance.

1. Service: the same real-time gRPC streams as bench_service.py (FINALIZE after each phrase,
   word times on in both runs, since diarization splits at word boundaries), at 1 and 32
   concurrent streams (``--streams``), diarization off and on in ``--rounds`` alternated pairs
   (off-on, on-off, ...: the machine's drift falls on both), in one server process with the
   speaker model loaded; the final's latency (client clock, from FINALIZE to the final), medians
   over all rounds side by side, and each round's own difference (its spread). Goal: under 10 % added at 1 stream (the speaker windows are embedded on their
   own thread while the engine decodes the final, so only what outlasts the final adds).
2. Speaker stage per utterance on the CPU, per speaker model (resemblyzer, and wespeaker-resnet34
   from ``--wespeaker`` or random weights in pyannote's layout: the same cost): the model's windows
   (``embed_windows``: features and one batched pass, on one thread) for 2, 5 and 10 s of speech, and
   the clustering decision (``diarization.decide``), median of ``--repeats``. ``--stage-only``: this part alone.

JSON in benchmarks/results/speakers.json (speakers-quick.json with --quick).

    python benchmarks/bench_speakers.py [--model DIR] [--aligner DIR] [--device cpu] [--streams 1,32] \\
        [--utterances 6] [--rounds 3] [--speaker-model NAME[:SOURCE]] [--wespeaker FOLDER] [--stage-only] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

from bench_service import GAP_S, RATE, EngineProbe, client_process, phrases_audio, summarize
from common import checkpoint, median_time, print_table, write_results


def stage_costs(repeats: int, wespeaker: str | None, threads: int) -> tuple[list[list], list[dict]]:
    import tempfile

    import soxr

    from qwen3_asr_stream.engine.speakers import SpeakerModelOptions, embed_windows, load_speaker_model
    from qwen3_asr_stream.session.diarization import DiarizationOptions, SpeakerClusters, decide
    from qwen3_asr_stream.testing.speaker_checkpoints import write_wespeaker
    from qwen3_asr_stream.testing.speech import synthesize

    text = "the quick brown fox jumps over the lazy dog while the meeting goes on and on " * 3
    speech, rate = synthesize(text)
    speech = soxr.resample(speech.astype(np.float32) / 32768, rate, RATE).astype(np.float32)
    rows, out = [], []
    folder = wespeaker or str(write_wespeaker(tempfile.mkdtemp(prefix="wespeaker-")))
    for name in ("resemblyzer", f"wespeaker-resnet34:{folder}"):
        encoder = load_speaker_model(SpeakerModelOptions(name, threads=threads))
        name = encoder.name
        for seconds in (2, 5, 10):
            audio = speech[: seconds * RATE]
            model_s, _ = median_time(lambda: embed_windows(encoder, audio), repeats)
            embeddings, spans = embed_windows(encoder, audio)
            words = [(s, s + 4000) for s in range(0, len(audio) - 4000, 6400)]
            clusters = SpeakerClusters(DiarizationOptions())
            decide_s, _ = median_time(lambda: decide(clusters, embeddings, spans, words, len(audio)), repeats)
            rows.append([name, seconds, len(embeddings), 1000 * model_s, 1000 * decide_s])
            out.append(dict(model=name, seconds=seconds, windows=len(embeddings), model_ms=1000 * model_s,
                            decide_ms=1000 * decide_s, torch_threads=threads))
    return rows, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="ASR checkpoint folder (default: a random tiny checkpoint)")
    parser.add_argument("--aligner", help="aligner checkpoint folder (default: a random tiny checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--speaker-model", default="resemblyzer", help="the service part's, NAME[:SOURCE]")
    parser.add_argument("--speaker-threads", type=int, default=1, help="the speaker model's CPU threads (serve's)")
    parser.add_argument("--wespeaker", help="WeSpeaker checkpoint folder for the stage part (default: random weights)")
    parser.add_argument("--stage-only", action="store_true", help="only the speaker stage per utterance")
    parser.add_argument("--streams", default="1,32", help="comma-separated concurrency levels")
    parser.add_argument("--utterances", type=int, default=6, help="utterances per stream")
    parser.add_argument("--rounds", type=int, default=3,
                        help="off/on pairs per level, alternated (off-on, on-off, ...); medians over all rounds")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 utterances per stream, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.utterances, args.repeats, args.rounds = 2, 3, 1

    from qwen3_asr_stream.checkpoint import LoadOptions
    from qwen3_asr_stream.engine.speakers import SpeakerModelOptions, load_speaker_model
    from qwen3_asr_stream.server.options import ServerOptions
    from qwen3_asr_stream.testing.harness import ServerThread, load_aligner, load_engine

    stage_rows, stage = stage_costs(args.repeats, args.wespeaker, args.speaker_threads)
    stage_title = f"speaker stage per utterance on the CPU, {args.speaker_threads} thread(s), ms (median of {args.repeats})"
    stage_header = ["model", "speech s", "windows", "model ms", "decide ms"]
    if args.stage_only:
        print_table(stage_title, stage_header, stage_rows)
        write_results("speakers-stage", {"wespeaker": args.wespeaker or "random weights", "stage": stage})
        return
    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    load = LoadOptions(dtype=dtype, device=args.device)
    levels = [int(n) for n in args.streams.split(",")]
    options = ServerOptions(port=0, max_streams=max(4, *levels))  # room for a FINALIZEd utterance beside the next
    engine = load_engine(str(checkpoint("tiny-asr", args.model, dtype="float32")), options, load)
    aligner = load_aligner(str(checkpoint("tiny-aligner", args.aligner, dtype="float32")), load)
    probe = EngineProbe(engine)
    phrases, source = phrases_audio()
    runs, rows = [], []
    with ServerThread(options, {"asr": engine}, aligner, load_speaker_model(
            SpeakerModelOptions(args.speaker_model, threads=args.speaker_threads))) as server:
        parent, child = mp.get_context("spawn").Pipe()
        client = mp.get_context("spawn").Process(target=client_process, args=(server.address, phrases, child))
        client.start()
        try:
            for streams in levels:
                cycle = sum(len(p) for p in phrases) / RATE / len(phrases) + GAP_S
                pooled = {False: ([], [], []), True: ([], [], [])}  # records, engine finals, interim computes
                per_round = []
                for round_ in range(args.rounds):
                    medians = {}
                    for diarization in ((False, True) if round_ % 2 == 0 else (True, False)):  # alternated
                        config = dict(streams=streams, words=True, diarization=diarization,
                                      utterances=args.utterances, chunk_ms=50, update_interval_ms=500,
                                      stagger_s=cycle / streams)
                        probe.reset()
                        parent.send(config)
                        records = parent.recv()
                        pooled[diarization][0].extend(records)
                        pooled[diarization][1].extend(probe.finals)
                        pooled[diarization][2].extend(probe.interim_compute)
                        medians[diarization] = summarize(records, probe)["final_ms"]["median"]
                    per_round.append(100 * (medians[True] - medians[False]) / medians[False])
                for diarization in (False, True):
                    records, probe.finals, probe.interim_compute = pooled[diarization]
                    summary = {"streams": streams, "diarization": diarization, "rounds": args.rounds,
                               "utterances_per_round": args.utterances, **summarize(records, probe),
                               "finals_with_speaker": sum(r.get("speaker") is not None for r in records)}
                    if diarization:
                        summary["added_per_round_pct"] = per_round
                    runs.append(summary)
                    off = runs[-2]["final_ms"]["median"] if diarization else None
                    rows.append([streams, "on" if diarization else "off", summary["final_ms"]["median"],
                                 summary["final_ms"]["p95"], summary["final_server_ms"]["median"],
                                 summary["engine_final_ms"]["median"],
                                 f"{summary['finals_with_speaker']}/{summary['utterances']}",
                                 "" if not diarization else f"{100 * (summary['final_ms']['median'] - off) / off:+.1f} %",
                                 "" if not diarization else " ".join(f"{x:+.0f}" for x in per_round)])
        finally:
            parent.send(None)
            client.join(30)
    engine.close()
    print_table(stage_title, stage_header, stage_rows)
    print_table(f"final latency with diarization off / on, ms (loopback gRPC, real time, word times on, {source}, "
                f"ASR on {args.device})",
                ["streams", "diarization", "final p50", "final p95", "server p50", "engine p50", "with speaker",
                 "added p50", "added per round %"], rows)
    write_results("speakers-quick" if args.quick else "speakers", {
        "model": args.model or "random tiny-asr", "aligner": args.aligner or "random tiny-aligner",
        "speaker_model": args.speaker_model, "device": args.device, "dtype": dtype, "audio": source,
        "stage": stage, "runs": runs,
    })


if __name__ == "__main__":
    main()
