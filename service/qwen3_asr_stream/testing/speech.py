"""Synthesized speech for tests and benchmarks, from eSpeak NG without a system package.

The ``espeakng-loader`` wheel (test extra) ships the eSpeak NG library and its voice
data; this module calls the library through ctypes:

    audio, rate = synthesize("hello world")          # int16 samples at eSpeak's rate (22050 Hz)
    write_wav("hello world", "hello.wav")
"""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: synthesize into the callback, return when done
_ESPEAK_RATE = 1  # espeak_PARAMETER: words per minute
_ESPEAK_PITCH = 3  # espeakPITCH: base pitch, 0-100
_CHARS_UTF8 = 1  # espeak_Synth flags: the text is UTF-8,
_END_PAUSE = 0x1000  # and a sentence's pause follows it (as the espeak-ng program writes)
_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class SpeechError(RuntimeError):
    pass


class _Espeak:
    """The library, initialized once; one synthesis at a time (its state is global)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise SpeechError("synthesized speech needs the espeakng-loader package (test extra): "
                              "pip install espeakng-loader") from exc
        lib = ctypes.cdll.LoadLibrary(str(espeakng_loader.get_library_path()))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_Callback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                          str(espeakng_loader.get_data_path()).encode(), 0)
        if self.rate <= 0:
            raise SpeechError(f"eSpeak NG did not initialize (error {self.rate})")
        self._chunks: list[np.ndarray] = []
        self._callback = _Callback(self._collect)  # kept referenced: the library calls it
        lib.espeak_SetSynthCallback(self._callback)
        self.lib = lib
        self.lock = threading.Lock()

    def _collect(self, wav, n: int, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0  # go on

    def synthesize(self, text: str, voice: str, words_per_minute: int, pitch: int = 50) -> np.ndarray:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise SpeechError(f"eSpeak NG has no voice {voice!r}")
            self.lib.espeak_SetParameter(_ESPEAK_RATE, words_per_minute, 0)
            self.lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
            self._chunks = []
            data = text.encode("utf-8")
            error = self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _CHARS_UTF8 | _END_PAUSE, None, None)
            if error != 0:
                raise SpeechError(f"eSpeak NG failed to synthesize {text!r} (error {error})")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)


_engine: _Espeak | None = None
_engine_lock = threading.Lock()


def _espeak() -> _Espeak:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Espeak()
        return _engine


def synthesize(text: str, voice: str = "en-us", words_per_minute: int = 160, pitch: int = 50
               ) -> tuple[np.ndarray, int]:
    """``text`` spoken: int16 mono samples and their sample rate; ``pitch`` 0-100 (eSpeak's base
    pitch; 50 is the voice's own)."""
    if not 0 <= pitch <= 100:
        raise ValueError(f"pitch must be 0-100, got {pitch}")
    engine = _espeak()
    return engine.synthesize(text, voice, words_per_minute, pitch), engine.rate


def write_wav(text: str, path: str | Path, voice: str = "en-us", words_per_minute: int = 160) -> Path:
    """``text`` spoken, as a 16-bit PCM WAV file at eSpeak's rate."""
    import soundfile

    audio, rate = synthesize(text, voice, words_per_minute)
    soundfile.write(str(path), audio, rate, subtype="PCM_16")
    return Path(path)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        sys.exit("usage: python -m qwen3_asr_stream.testing.speech TEXT OUT.wav")
    print(write_wav(sys.argv[1], sys.argv[2]))
