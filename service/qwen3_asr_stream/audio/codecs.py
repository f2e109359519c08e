"""The one table of audio encodings the server decodes, and the protocols' names for them.

    AudioEncoding.MULAW.raw          # True: fixed-size samples, rate and channels from the request
    AudioEncoding.OGG_OPUS.raw       # False: a container; rate and channels come from its header
    deepgram_encoding("mulaw")       # -> AudioEncoding.MULAW; None -> CONTAINER (detected from the bytes)

==========  ==============  ===========================================================
encoding    kind            decoded by
==========  ==============  ===========================================================
LINEAR16    raw, 2 B/sample  numpy (little-endian int16)
FLOAT32     raw, 4 B/sample  numpy (little-endian float32, NaN refused)
MULAW       raw, 1 B/sample  G.711 table (``g711``), any rate
ALAW        raw, 1 B/sample  G.711 table (``g711``), any rate
OGG_OPUS    stream           Ogg pages -> Opus packets -> libavcodec (``ogg``)
WEBM_OPUS   stream           EBML blocks -> Opus packets -> libavcodec (``webm``)
FLAC        stream           FLAC frames -> libavcodec (``flac``)
CONTAINER   detected         Ogg/Opus, WebM/Opus, FLAC, WAV, MP3 as streams (by their first
                             bytes); anything else FFmpeg reads (M4A, MP4, MPEG, Vorbis, ...)
                             kept and decoded whole at the end of input
==========  ==============  ===========================================================

Everything here is torch-free; PyAV is imported by the readers (``readers``, ``ogg``, ``webm``,
``flac``, ``containers``: how streams are split and decoded, and the bounds, are in
``containers``' docstring).
"""

from __future__ import annotations

import enum

import numpy as np


class InvalidAudio(ValueError):
    """The client sent audio that cannot be decoded (maps to INVALID_ARGUMENT)."""


class CorruptStream(InvalidAudio):
    """A compressed stream's bytes are damaged or cut mid-stream: the call ends gracefully
    (the audio decoded before the damage is recognized), then INVALID_ARGUMENT."""


class AudioTooLong(InvalidAudio):
    """A whole file holds more audio than the request may."""


class NotStreamable(InvalidAudio):
    """A container holding a codec that is not decoded as it arrives (Vorbis in Ogg / WebM):
    refused for a named encoding; CONTAINER falls back to decoding the whole file."""


class AudioEncoding(str, enum.Enum):
    """The encodings the server decodes; the values are the client's strings."""

    LINEAR16 = "LINEAR16"  # signed 16-bit little-endian PCM
    FLOAT32 = "FLOAT32"  # IEEE 754 32-bit little-endian, nominally in [-1, 1]
    MULAW = "MULAW"  # G.711 mu-law, 8 bits per sample
    ALAW = "ALAW"  # G.711 A-law, 8 bits per sample
    OGG_OPUS = "OGG_OPUS"  # Opus in Ogg pages (RFC 7845)
    WEBM_OPUS = "WEBM_OPUS"  # Opus in WebM (what a browser's MediaRecorder writes)
    FLAC = "FLAC"  # a FLAC stream (fLaC + metadata + frames)
    CONTAINER = "CONTAINER"  # detected from the bytes: any of the above containers, WAV, MP3, M4A, ...

    @property
    def raw(self) -> bool:
        """Fixed-size samples whose rate and channel count the request gives."""
        return self in _SAMPLE_BYTES

    @property
    def sample_bytes(self) -> int:
        """Bytes per sample of one channel (1 for containers: a byte is the unit of input)."""
        return _SAMPLE_BYTES.get(self, 1)

    @property
    def dtype(self) -> np.dtype:
        return _DTYPES[self]


_SAMPLE_BYTES = {AudioEncoding.LINEAR16: 2, AudioEncoding.FLOAT32: 4, AudioEncoding.MULAW: 1,
                 AudioEncoding.ALAW: 1}
_DTYPES = {AudioEncoding.LINEAR16: np.dtype("<i2"), AudioEncoding.FLOAT32: np.dtype("<f4"),
           AudioEncoding.MULAW: np.dtype("u1"), AudioEncoding.ALAW: np.dtype("u1")}

# Deepgram's ``encoding`` query values (None: no encoding given, containerized audio).
DEEPGRAM_ENCODINGS = {
    None: AudioEncoding.CONTAINER,
    "linear16": AudioEncoding.LINEAR16,
    "mulaw": AudioEncoding.MULAW,
    "alaw": AudioEncoding.ALAW,
    "opus": AudioEncoding.OGG_OPUS,
    "ogg-opus": AudioEncoding.OGG_OPUS,
    "flac": AudioEncoding.FLAC,
}


def deepgram_encoding(name: str | None) -> AudioEncoding:
    """A Deepgram ``encoding`` parameter -> ours; raises ValueError naming the values taken."""
    key = name.strip().lower() if name else None
    if key not in DEEPGRAM_ENCODINGS:
        known = ", ".join(k for k in DEEPGRAM_ENCODINGS if k)
        raise ValueError(f"encoding {name!r} is not supported; use one of {known}, or no encoding for "
                         f"containerized audio (WAV, Ogg, WebM, FLAC, MP3, M4A)")
    return DEEPGRAM_ENCODINGS[key]
