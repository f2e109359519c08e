"""Microphone demo: capture with sounddevice, stream, print the live transcript.

Ctrl-C stops the capture and waits for the last final result; a second Ctrl-C
quits at once. Both work when the input device stops delivering audio (an
unplugged USB microphone), which the client also reports after STALL_SECONDS.
"""

from __future__ import annotations

import argparse
import atexit
import queue
import sys
import threading
import time

import grpc

from .api import RecognitionOptions, StreamingClient
from .results import AudioFormat

BLOCK_SECONDS = 0.1  # audio per message
STALL_SECONDS = 3.0  # no audio from the device this long: say so
STOP_WAIT_SECONDS = 2.0  # at the end, how long to wait for the device to stop
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
        stopping = threading.Event()  # after the first Ctrl-C: audio is no longer sent
        last_audio = [time.monotonic()]

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
            last_audio[0] = time.monotonic()
            if not stopping.is_set():
                stream.send_audio(bytes(indata))

        capture = sd.RawInputStream(samplerate=rate, blocksize=int(rate * BLOCK_SECONDS), device=device,
                                    channels=1, dtype="int16", callback=on_audio)
        capture.start()
        print(f"listening on {info['name']} at {rate} Hz; Ctrl-C to stop", file=err)
        # PortAudio's stop waits for the device; one that delivers nothing may never let it
        # return, so it runs on a thread of its own and the client does not wait for it.
        stopper = threading.Thread(target=capture.stop, name="mic-stop", daemon=True)
        stalled = False
        try:
            while True:
                try:
                    item = items.get(timeout=0.1)
                except queue.Empty:
                    if not stopping.is_set() and not stalled and time.monotonic() - last_audio[0] > STALL_SECONDS:
                        stalled = True
                        print(f"\nqwen3-asr-stream mic: no audio from {info['name']} for {STALL_SECONDS:g} s "
                              "(unplugged, muted or stopped?); Ctrl-C to stop", file=err, flush=True)
                    continue
                except KeyboardInterrupt:
                    if stopping.is_set():
                        print("qwen3-asr-stream mic: quitting without the last final result", file=err)
                        stream.cancel()
                        return 130
                    stopping.set()
                    printer.close()
                    stalled = stalled or time.monotonic() - last_audio[0] > STALL_SECONDS
                    why = " (the input device delivers no audio)" if stalled else ""
                    print(f"qwen3-asr-stream mic: stopping{why}: waiting for the last final result "
                          "(Ctrl-C again to quit now)", file=err, flush=True)
                    stopper.start()
                    stream.done_writing()  # the server sends the last final, then ends the call
                    continue
                if item is _END:
                    return 0
                if isinstance(item, grpc.RpcError):
                    raise item
                printer.handle(item)
        finally:
            stopping.set()
            if not stopper.is_alive() and stopper.ident is None:
                stopper.start()
            stopper.join(STOP_WAIT_SECONDS)
            if stopper.is_alive():
                print(f"qwen3-asr-stream mic: the input device {info['name']!r} does not stop (it delivers no "
                      "audio); leaving it open", file=err, flush=True)
                # sounddevice's exit handler would stop the stream again and hang the exit
                exit_handler = getattr(sd, "_exit_handler", None)
                if exit_handler is not None:
                    atexit.unregister(exit_handler)
            else:
                capture.close()
