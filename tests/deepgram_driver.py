"""Drive the official deepgram-sdk and Pipecat's DeepgramSTTService against a Deepgram-compatible server.

Runs in the virtualenv of Pipecat with its deepgram extra (.venv-pipecat, see .ci/run);
tests/test_deepgram_api.py starts our server and runs this script there. Prints one JSON
object per message or frame received.

    python tests/deepgram_driver.py --url http://127.0.0.1:8080 --wav speech.wav --mode sdk-live
"""

from __future__ import annotations

import argparse
import asyncio
import json
import wave

FRAME_MS = 20


def emit(kind: str, **fields) -> None:
    print(json.dumps({"kind": kind, **fields}, default=str), flush=True)


def environment(url: str):
    from deepgram.environment import DeepgramClientEnvironment

    ws = url.replace("http", "ws", 1)
    return DeepgramClientEnvironment(base=url, production=ws, agent=ws, agent_rest=url)


async def sdk_live(args, rate: int, pcm: bytes) -> None:
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType

    client = AsyncDeepgramClient(api_key=args.api_key, environment=environment(args.url))
    query = json.loads(args.query)
    try:
        async with client.listen.v1.connect(model="nova-3", encoding="linear16", sample_rate=str(rate),
                                            **query) as connection:
            done = asyncio.Event()

            def on_message(message) -> None:
                data = message.model_dump(exclude_none=True) if hasattr(message, "model_dump") else message
                emit("message", data=data)

            connection.on(EventType.MESSAGE, on_message)
            connection.on(EventType.CLOSE, lambda _: done.set())
            connection.on(EventType.ERROR, lambda e: emit("error", error=str(e)))
            listener = asyncio.create_task(connection.start_listening())
            step = rate * FRAME_MS // 1000 * 2 * args.channels  # 16-bit frames of every channel
            cut = len(pcm) if args.finalize_at is None else int(args.finalize_at * rate) * 2 * args.channels
            for i in range(0, cut, step):
                await connection.send_media(pcm[i:min(i + step, cut)])
                await asyncio.sleep(FRAME_MS / 1000 / args.speed)
            if args.finalize_at is not None:
                await connection.send_finalize()
                await asyncio.sleep(args.tail_s)
                for i in range(cut, len(pcm), step):
                    await connection.send_media(pcm[i:i + step])
                    await asyncio.sleep(FRAME_MS / 1000 / args.speed)
            await connection.send_keep_alive()
            await asyncio.sleep(args.tail_s)
            await connection.send_close_stream()
            await asyncio.wait_for(listener, 60)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        emit("exception", type=type(exc).__name__, status=getattr(exc, "status_code", None), text=str(exc)[:1000])


async def sdk_flux(args, rate: int, pcm: bytes) -> None:
    """The SDK's Flux client (listen.v2) in real time."""
    from deepgram import AsyncDeepgramClient
    from deepgram.core.events import EventType

    client = AsyncDeepgramClient(api_key=args.api_key, environment=environment(args.url))
    try:
        async with client.listen.v2.connect(model="flux-general-en", encoding="linear16", sample_rate=str(rate),
                                            **json.loads(args.query)) as connection:
            connection.on(EventType.MESSAGE, lambda m: emit("message", data=m.model_dump(exclude_none=True)))
            connection.on(EventType.ERROR, lambda e: emit("error", error=str(e)))
            listener = asyncio.create_task(connection.start_listening())
            step = rate * FRAME_MS // 1000 * 2
            for i in range(0, len(pcm), step):
                await connection.send_media(pcm[i:i + step])
                await asyncio.sleep(FRAME_MS / 1000 / args.speed)
            await asyncio.sleep(args.tail_s)
            await connection.send_close_stream()
            await asyncio.wait_for(listener, 60)
    except Exception as exc:  # noqa: BLE001 - reported to the test
        emit("exception", type=type(exc).__name__, status=getattr(exc, "status_code", None), text=str(exc)[:1000])


def sdk_prerecorded(args, wav_bytes: bytes) -> None:
    from deepgram import DeepgramClient

    client = DeepgramClient(api_key=args.api_key, environment=environment(args.url))
    try:
        response = client.listen.v1.media.transcribe_file(request=wav_bytes, model="nova-3", smart_format=True,
                                                          **json.loads(args.query))
        emit("prerecorded", data=response.model_dump(exclude_none=True))
    except Exception as exc:  # noqa: BLE001
        emit("exception", type=type(exc).__name__, status=getattr(exc, "status_code", None), text=str(exc)[:1000],
             body=str(getattr(exc, "body", ""))[:1000])


async def pipecat(args, rate: int, pcm: bytes) -> None:
    from pipecat.frames.frames import ErrorFrame, InputAudioRawFrame, InterimTranscriptionFrame, TranscriptionFrame
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.services.deepgram.stt import DeepgramSTTService
    from pipecat.tests.utils import SleepFrame, run_test

    stt = DeepgramSTTService(api_key=args.api_key, base_url=args.url, sample_rate=rate)
    step = rate * FRAME_MS // 1000 * 2
    frames = []
    for i in range(0, len(pcm), step):
        frames += [InputAudioRawFrame(audio=pcm[i:i + step], sample_rate=rate, num_channels=1),
                   SleepFrame(FRAME_MS / 1000)]
    down, up = await run_test(stt, frames_to_send=[*frames, SleepFrame(args.tail_s)], start_timeout=10,
                              pipeline_params=PipelineParams(audio_in_sample_rate=rate))
    for frame in [*down, *up]:
        if isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)):
            emit(type(frame).__name__, text=frame.text)
        elif isinstance(frame, ErrorFrame):
            emit("ErrorFrame", error=frame.error)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="http://host:port of the server")
    parser.add_argument("--wav", required=True)
    parser.add_argument("--mode", choices=["sdk-live", "sdk-flux", "sdk-prerecorded", "pipecat"], required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--query", default="{}", help="JSON of more query parameters")
    parser.add_argument("--finalize-at", type=float, default=None, help="send Finalize after this many s of audio")
    parser.add_argument("--speed", type=float, default=1.0, help="send audio this many times faster than real time")
    parser.add_argument("--tail-s", type=float, default=3.0)
    args = parser.parse_args()
    with open(args.wav, "rb") as f:
        wav_bytes = f.read()
    with wave.open(args.wav) as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
        args.channels = w.getnchannels()
    if args.mode == "sdk-live":
        await sdk_live(args, rate, pcm)
    elif args.mode == "sdk-flux":
        await sdk_flux(args, rate, pcm)
    elif args.mode == "sdk-prerecorded":
        sdk_prerecorded(args, wav_bytes)
    else:
        await pipecat(args, rate, pcm)


if __name__ == "__main__":
    asyncio.run(main())
