"""Microphone demo: capture with sounddevice, stream, print the live transcript.

Ctrl-C stops the capture and waits for the last final result; a second Ctrl-C
quits at once.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading

import grpc

from .api import RecognitionOptions, StreamingClient
from .results import AudioFormat

BLOCK_SECONDS = 0.1  # audio per message
_END = object()


def _open_sounddevice(err):
    """The sounddevice module, or None after explaining what is missing."""
    try:
        import sounddevice
    except ImportError:
        print("qwen3-asr-stream mic: the microphone needs the sounddevice package: "
              "pip install 'qwen3-asr-stream[mic]'", file=err)
        return None
    except OSError as exc:  # sounddevice raises this when libportaudio is missing
        print(f"qwen3-asr-stream mic: the PortAudio library is not installed ({exc}); install it "
              "(Debian/Ubuntu: apt-get install libportaudio2, macOS: brew install portaudio)", file=err)
        return None
    return sounddevice


def run(args: argparse.Namespace, options: RecognitionOptions, settings: dict, printer, err=None) -> int:
    err = err or sys.stderr
    sd = _open_sounddevice(err)
    if sd is None:
        return 2
    device = int(args.device) if isinstance(args.device, str) and args.device.isdigit() else args.device
    try:
        info = sd.query_devices(device, kind="input")
    except (ValueError, sd.PortAudioError) as exc:
        print(f"qwen3-asr-stream mic: no audio input device ({exc}); connect a microphone or pick one "
              "with --device (list them: python -m sounddevice)", file=err)
        return 2
    rate = args.sample_rate
    try:
        sd.check_input_settings(device=device, samplerate=rate, channels=1, dtype="int16")
    except Exception:  # the server resamples; capture at the device's own rate
        rate = int(info["default_samplerate"])

    with StreamingClient(args.server, **settings) as client:
        stream = client.open_stream(AudioFormat(rate, 1, "LINEAR16"), options, raw=args.json)
        items: queue.Queue = queue.Queue()

        def read_responses():
            try:
                for item in stream:
                    items.put(item)
            except grpc.RpcError as exc:
                items.put(exc)
            finally:
                items.put(_END)

        threading.Thread(target=read_responses, daemon=True).start()

        def on_audio(indata, frames, time_info, status):
            stream.send_audio(bytes(indata))

        capture = sd.RawInputStream(samplerate=rate, blocksize=int(rate * BLOCK_SECONDS), device=device,
                                    channels=1, dtype="int16", callback=on_audio)
        print(f"listening on {info['name']} at {rate} Hz; Ctrl-C to stop", file=err)
        stopping = False
        with capture:
            while True:
                try:
                    item = items.get(timeout=0.1)
                    if item is _END:
                        return 0
                    if isinstance(item, grpc.RpcError):
                        raise item
                    printer.handle(item)
                except queue.Empty:
                    continue
                except KeyboardInterrupt:
                    if stopping:
                        stream.cancel()
                        return 130
                    stopping = True
                    capture.stop()  # no more callbacks after this
                    stream.done_writing()  # the server sends the last final, then ends the call
