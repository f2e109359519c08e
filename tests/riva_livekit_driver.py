"""Drive LiveKit's NVIDIA STT plugin with a WAV file against a Riva-compatible server.

Runs in a virtualenv with ``livekit-plugins-nvidia`` (tests/test_riva_livekit.py starts our server
and runs this script there). Prints one JSON object per speech event of the stream.

    python tests/riva_livekit_driver.py --server 127.0.0.1:50051 --wav speech.wav
"""

from __future__ import annotations

import argparse
import asyncio
import json
import wave

from livekit import rtc
from livekit.plugins import nvidia

FRAME_MS = 20


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--wav", required=True)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()

    with wave.open(args.wav) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    # The plugin's defaults (model "parakeet-1.1b-en-US-asr-streaming-silero-vad-sortformer", 16 kHz,
    # en-US, word offsets on), but for the address of a local server without TLS.
    stt = nvidia.STT(server=args.server, use_ssl=False, api_key=args.api_key)
    stream = stt.stream()

    async def feed() -> None:
        step = rate * FRAME_MS // 1000
        for i in range(0, len(pcm) // 2, step):
            data = pcm[2 * i : 2 * (i + step)]
            stream.push_frame(rtc.AudioFrame(data=data, sample_rate=rate, num_channels=1,
                                             samples_per_channel=len(data) // 2))
            await asyncio.sleep(FRAME_MS / 1000)  # real time
        stream.end_input()

    feeder = asyncio.create_task(feed())
    async for event in stream:
        alternative = event.alternatives[0] if event.alternatives else None
        print(json.dumps({
            "type": event.type.name,
            "text": alternative.text if alternative else "",
            "start_time": alternative.start_time if alternative else 0.0,
            "end_time": alternative.end_time if alternative else 0.0,
            "words": [[w, w.start_time, w.end_time] for w in (alternative.words or [])] if alternative else [],
        }), flush=True)
    await feeder
    await stream.aclose()


if __name__ == "__main__":
    asyncio.run(main())
