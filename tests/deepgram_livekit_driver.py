"""Drive LiveKit's Deepgram STT plugin (live stream and pre-recorded) against a Deepgram-compatible server.

Runs in .venv-livekit (livekit-plugins-deepgram, see .ci/run); tests/test_deepgram_api.py starts our
server and runs this script there. Prints one JSON object per speech event.

    python tests/deepgram_livekit_driver.py --url http://127.0.0.1:8080 --wav speech.wav --api-key KEY
"""

from __future__ import annotations

import argparse
import asyncio
import json
import wave

import aiohttp
from livekit import rtc
from livekit.agents import APIConnectOptions
from livekit.plugins import deepgram

FRAME_MS = 20


def emit(kind: str, **fields) -> None:
    print(json.dumps({"kind": kind, **fields}, default=str), flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--wav", required=True)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    with wave.open(args.wav) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())

    async with aiohttp.ClientSession() as http:
        # The plugin's defaults (nova-3, en-US, punctuate, endpointing 25 ms, filler words, VAD events),
        # but for the server's address and the audio's rate.
        stt = deepgram.STT(api_key=args.api_key, base_url=f"{args.url}/v1/listen", http_session=http,
                           sample_rate=rate)
        frame = rtc.AudioFrame(data=pcm, sample_rate=rate, num_channels=1, samples_per_channel=len(pcm) // 2)
        try:
            event = await stt.recognize(frame, conn_options=APIConnectOptions(max_retry=0, timeout=60))
            emit("prerecorded", text=event.alternatives[0].text if event.alternatives else "")
        except Exception as exc:  # noqa: BLE001 - reported to the test
            emit("exception", where="recognize", type=type(exc).__name__, text=str(exc)[:500])

        stream = stt.stream(conn_options=APIConnectOptions(max_retry=0, timeout=30))

        async def feed() -> None:
            step = rate * FRAME_MS // 1000
            for i in range(0, len(pcm) // 2, step):
                data = pcm[2 * i:2 * (i + step)]
                stream.push_frame(rtc.AudioFrame(data=data, sample_rate=rate, num_channels=1,
                                                 samples_per_channel=len(data) // 2))
                await asyncio.sleep(FRAME_MS / 1000)  # real time
            await asyncio.sleep(1.0)
            stream.end_input()

        feeder = asyncio.create_task(feed())
        try:
            async for event in stream:
                alternative = event.alternatives[0] if event.alternatives else None
                emit(event.type.name, text=alternative.text if alternative else "",
                     start_time=alternative.start_time if alternative else None,
                     end_time=alternative.end_time if alternative else None)
        except Exception as exc:  # noqa: BLE001
            emit("exception", where="stream", type=type(exc).__name__, text=str(exc)[:500])
        await feeder
        await stream.aclose()


if __name__ == "__main__":
    asyncio.run(main())
