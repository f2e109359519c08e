"""Drive Pipecat's NVIDIA STT services with a WAV file against a Riva-compatible server.

Runs in a virtualenv with ``pipecat-ai[nvidia]`` (Pipecat pins protobuf < 7, so not in the
server's venv); tests/test_riva_pipecat.py starts our server and runs this script there.
Prints one JSON object per transcription or error frame the service pushed.

    python tests/riva_pipecat_driver.py --server 127.0.0.1:50051 --wav speech.wav --service streaming
"""

from __future__ import annotations

import argparse
import asyncio
import json
import wave

from pipecat.frames.frames import (ErrorFrame, InputAudioRawFrame, InterimTranscriptionFrame, TranscriptionFrame,
                                   VADUserStartedSpeakingFrame, VADUserStoppedSpeakingFrame)
from pipecat.pipeline.worker import PipelineParams
from pipecat.services.nvidia.stt import NvidiaSegmentedSTTService, NvidiaSTTService
from pipecat.tests.utils import SleepFrame, run_test

FRAME_MS = 20  # what a transport delivers per audio frame


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--wav", required=True)
    parser.add_argument("--service", choices=["streaming", "segmented"], required=True)
    parser.add_argument("--api-key", default=None, help="sent as 'authorization: Bearer KEY'")
    parser.add_argument("--tail-s", type=float, default=3.0, help="time after the audio for the last results")
    args = parser.parse_args()

    with wave.open(args.wav) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    step = rate * FRAME_MS // 1000 * 2
    audio = [InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=rate, num_channels=1)
             for i in range(0, len(pcm), step)]
    # The services' defaults, but for the server address: no TLS to a local server.
    if args.service == "streaming":
        stt = NvidiaSTTService(server=args.server, use_ssl=False, api_key=args.api_key)
        frames = [item for frame in audio for item in (frame, SleepFrame(FRAME_MS / 1000))]  # real time
    else:
        stt = NvidiaSegmentedSTTService(server=args.server, use_ssl=False, api_key=args.api_key)
        frames = [VADUserStartedSpeakingFrame(), *audio, VADUserStoppedSpeakingFrame()]
    down, up = await run_test(stt, frames_to_send=[*frames, SleepFrame(args.tail_s)], start_timeout=10,
                              pipeline_params=PipelineParams(audio_in_sample_rate=rate))
    for frame in [*down, *up]:
        if isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)):
            print(json.dumps({"type": type(frame).__name__, "text": frame.text, "language": str(frame.language)}),
                  flush=True)
        elif isinstance(frame, ErrorFrame):
            print(json.dumps({"type": "ErrorFrame", "error": frame.error}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
