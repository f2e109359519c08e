"""Speech encoded the way phones, browsers and files carry it, for tests and benchmarks (PyAV).

    data = encode(samples, rate, "ogg_opus")      # bytes of an Ogg/Opus stream
    pieces = random_cuts(data, rng)                # cut at random byte offsets
    snr_db(reference, decoded)                     # after aligning the codec's delay

Formats: ``mulaw`` / ``alaw`` (raw G.711 bytes at ``rate``), ``ogg_opus``, ``webm_opus``,
``flac``, ``wav``, ``mp3``, ``m4a`` (AAC in MP4), ``ogg_vorbis``, ``mp4`` (AAC), ``webm_vorbis``,
``mpeg`` (MPEG-1 Layer II in an MPEG program stream).
"""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

# format name -> (container, codec, codec rate or None for the input's)
FORMATS = {
    "ogg_opus": ("ogg", "libopus", 48_000), "webm_opus": ("webm", "libopus", 48_000),
    "flac": ("flac", "flac", None), "wav": ("wav", "pcm_s16le", None), "mp3": ("mp3", "libmp3lame", None),
    "m4a": ("ipod", "aac", None), "mp4": ("mp4", "aac", None), "ogg_vorbis": ("ogg", "vorbis", None),
    "webm_vorbis": ("webm", "vorbis", None), "mpeg": ("mpeg", "mp2", None), "mulaw": (None, "pcm_mulaw", None), "alaw": (None, "pcm_alaw", None),
}


def encode(samples: np.ndarray, rate: int, fmt: str, *, bit_rate: int | None = None,
           muxer_options: dict | None = None) -> bytes:
    """(n,) int16 mono samples at ``rate`` -> the bytes of ``fmt`` (a file, or raw G.711).
    ``muxer_options``: e.g. {"page_duration": "20000"} for Ogg pages of 20 ms (a live producer)."""
    import av

    container, codec, codec_rate = FORMATS[fmt]
    # FFmpeg's own Vorbis encoder writes stereo only: the same speech on both channels.
    layout = "stereo" if codec == "vorbis" else "mono"
    pcm = np.asarray(samples, np.int16)[None, :]
    if layout == "stereo":
        pcm = np.repeat(pcm, 2, axis=1)  # packed s16: L R L R
    frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
    frame.sample_rate = rate
    frame.pts, frame.time_base = 0, Fraction(1, rate)  # timestamps let muxers record the encoder's delay
    if container is None:  # raw G.711: a bare encoder
        enc = av.CodecContext.create(codec, "w")
        enc.sample_rate, enc.layout, enc.format = rate, "mono", "s16"
        return b"".join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])
    buf = io.BytesIO()
    with av.open(buf, "w", format=container, options=muxer_options or {}) as out:
        stream = out.add_stream(codec, rate=codec_rate or rate, layout=layout)
        if bit_rate:
            stream.bit_rate = bit_rate
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}  # FFmpeg's own Vorbis encoder
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def random_cuts(data: bytes, rng: np.random.Generator, low: int = 1, high: int = 400) -> list[bytes]:
    """``data`` in pieces of random sizes in [low, high): cuts fall anywhere in pages and blocks."""
    pieces, pos = [], 0
    while pos < len(data):
        n = int(rng.integers(low, high))
        pieces.append(data[pos:pos + n])
        pos += n
    return pieces


def aligned(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 800) -> tuple[np.ndarray, np.ndarray, int]:
    """The two signals overlapped at the lag (decoded later by ``lag`` samples, |lag| <= max_lag)
    that correlates best (by FFT)."""
    n = min(len(reference), len(decoded)) - 2 * max_lag
    ref = reference[max_lag:max_lag + n].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(decoded) + n)))
    corr = np.fft.irfft(np.fft.rfft(decoded.astype(np.float64), size) * np.conj(np.fft.rfft(ref, size)), size)
    lags = np.arange(-max_lag, max_lag + 1)
    best_lag = int(lags[np.argmax(corr[max_lag + lags])])
    return ref, decoded[max_lag + best_lag:max_lag + best_lag + n].astype(np.float64), best_lag


def snr_db(reference: np.ndarray, decoded: np.ndarray, max_lag: int = 800) -> tuple[float, int]:
    """Signal-to-noise ratio of ``decoded`` against ``reference`` (same rate, float), after aligning
    the codec's delay; returns (dB, lag in samples)."""
    ref, out, lag = aligned(reference, decoded, max_lag)
    noise = float(np.sum((ref - out) ** 2))
    return 10 * np.log10(float(np.sum(ref ** 2)) / max(noise, 1e-20)), lag


def video_only(container: str = "webm", seconds: float = 0.5) -> bytes:
    """A file with a video track and no audio (for the "no audio track" errors)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream("libvpx" if container == "webm" else "mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(int(10 * seconds)):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def corrupt_middle(data: bytes) -> bytes:
    """``data`` with a run of bytes in its middle flipped (inside a page / block / frame)."""
    out = bytearray(data)
    mid = len(out) // 2
    for i in range(mid, mid + 16):
        out[i] ^= 0x5A
    return bytes(out)


def cut_middle(data: bytes, n: int = 300) -> bytes:
    """``data`` with ``n`` bytes missing in its middle (a lost piece of a page / cluster / frame)."""
    mid = len(data) // 2
    return data[:mid] + data[mid + n:]
