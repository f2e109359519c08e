import numpy as np
import pytest

pytest.importorskip("soxr", reason="the server extra is needed")

from qwen3_asr_stream.audio.input import (  # noqa: E402
    TARGET_SAMPLE_RATE,
    AudioDecoder,
    AudioEncoding,
    AudioFormat,
    InvalidAudio,
    samples_to_ms,
)

LINEAR16, FLOAT32 = AudioEncoding.LINEAR16, AudioEncoding.FLOAT32


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def encode(samples: np.ndarray, encoding: AudioEncoding) -> bytes:
    """(n,) or (n, channels) float samples -> interleaved little-endian bytes."""
    if encoding is LINEAR16:
        return np.round(samples * 32767).astype("<i2").tobytes()
    return samples.astype("<f4").tobytes()


def decode_all(fmt: AudioFormat, chunks) -> np.ndarray:
    decoder = AudioDecoder(fmt)
    out = [decoder.decode(c) for c in chunks] + [decoder.flush()]
    assert decoder.samples_out == sum(len(o) for o in out)
    return np.concatenate(out)


def odd_splits(data: bytes, sizes=(1, 3, 5, 7, 11, 13, 333)):
    """Cut data into chunks of odd byte counts, so cuts fall inside samples and frames."""
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        chunks.append(data[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return chunks


@pytest.mark.parametrize("encoding", [LINEAR16, FLOAT32])
@pytest.mark.parametrize("rate", [16000, 44100])
@pytest.mark.parametrize("channels", [1, 2])
def test_split_at_odd_boundaries_gives_same_samples(encoding, rate, channels):
    rng = np.random.default_rng(0)
    samples = (0.3 * rng.standard_normal((rate // 5, channels))).clip(-1, 1).astype(np.float32)
    data = encode(samples, encoding)
    fmt = AudioFormat(rate, channels, encoding)
    whole = decode_all(fmt, [data])
    assert np.array_equal(decode_all(fmt, odd_splits(data)), whole)
    # Every single cut position inside the first frames: one byte at a time.
    head = data[: fmt.frame_bytes * 40]
    assert np.array_equal(
        decode_all(fmt, [head[i : i + 1] for i in range(len(head))]), decode_all(fmt, [head])
    )


def test_partial_frame_is_carried_not_dropped():
    fmt = AudioFormat(16000, 2, LINEAR16)
    decoder = AudioDecoder(fmt)
    frame = np.array([1000, 3000], "<i2").tobytes()  # one stereo frame, mean 2000
    assert len(decoder.decode(frame[:3])) == 0
    assert decoder.pending_bytes == 3 and decoder.frames_in == 0
    out = decoder.decode(frame[3:] + frame[:1])
    np.testing.assert_allclose(out, [2000 / 32768])
    assert decoder.pending_bytes == 1
    with pytest.raises(InvalidAudio, match="whole frame"):
        decoder.flush()  # the stream may not end inside a frame


def test_linear16_scaling_and_identity_at_16k():
    data = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    out = decode_all(AudioFormat(16000, 1, LINEAR16), [data])
    np.testing.assert_array_equal(out, np.array([0, 0.5, -1, 32767 / 32768], np.float32))
    assert out.dtype == np.float32


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 48000])
def test_resampled_length_and_frequency(rate):
    seconds, freq = 1.0, 440.0
    out = decode_all(AudioFormat(rate, 1, FLOAT32), odd_splits(encode(sine(freq, rate, seconds), FLOAT32)))
    assert abs(len(out) - TARGET_SAMPLE_RATE * seconds) <= 1
    spectrum = np.abs(np.fft.rfft(out[1000:-1000] * np.hanning(len(out) - 2000)))
    peak_hz = np.argmax(spectrum) * TARGET_SAMPLE_RATE / (len(out) - 2000)
    assert abs(peak_hz - freq) < 2.0
    rms = np.sqrt(np.mean(out[1000:-1000] ** 2))
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.01


def test_samples_out_counts_offsets():
    decoder = AudioDecoder(AudioFormat(8000, 1, LINEAR16))
    total = 0
    for _ in range(10):  # 10 x 100 ms
        total += len(decoder.decode(bytes(1600)))
    total += len(decoder.flush())
    assert decoder.frames_in == 8000 and decoder.received_ms == 1000.0
    assert total == decoder.samples_out == 16000 and samples_to_ms(decoder.samples_out) == 1000


@pytest.mark.parametrize("encoding", [LINEAR16, FLOAT32])
def test_stereo_downmix(encoding):
    left, right = sine(300, 16000, 0.5, 0.4), sine(1000, 16000, 0.5, 0.2)
    out = decode_all(AudioFormat(16000, 2, encoding), [encode(np.stack([left, right], axis=1), encoding)])
    np.testing.assert_allclose(out, (left + right) / 2, atol=1e-4)
    # Opposite channels cancel.
    out = decode_all(AudioFormat(16000, 2, FLOAT32), [encode(np.stack([left, -left], axis=1), FLOAT32)])
    assert np.abs(out).max() == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_floats_rejected(bad):
    samples = sine(440, 16000, 0.1)
    samples[800] = bad  # 50 ms in
    decoder = AudioDecoder(AudioFormat(16000, 1, FLOAT32))
    decoder.decode(encode(samples[:400], FLOAT32))
    with pytest.raises(InvalidAudio, match=r"NaN or infinite.*50\.0 ms"):
        decoder.decode(encode(samples[400:], FLOAT32))
    assert decoder.frames_in == 400  # the rejected chunk changed nothing


def test_chunk_size_limit():
    decoder = AudioDecoder(AudioFormat(), max_chunk_bytes=3200)
    assert len(decoder.decode(bytes(3200))) == 1600
    with pytest.raises(InvalidAudio, match="3201 bytes exceeds the limit of 3200"):
        decoder.decode(bytes(3201))


@pytest.mark.parametrize("rate", [0, -16000, 7999, 48001, 1_000_000, 16000.0, None, True])
def test_bad_sample_rates_rejected(rate):
    with pytest.raises(ValueError, match="sample rate"):
        AudioFormat(rate, 1, LINEAR16)


@pytest.mark.parametrize("channels", [0, 9, 16, -1, 1.0])
def test_bad_channel_counts_rejected(channels):
    with pytest.raises(ValueError, match="channels"):
        AudioFormat(16000, channels, LINEAR16)


def test_bad_encoding_rejected():
    with pytest.raises(ValueError, match="encoding"):
        AudioFormat(16000, 1, "GSM")
    assert not issubclass(ValueError, InvalidAudio) and issubclass(InvalidAudio, ValueError)


@pytest.mark.parametrize("rate", [8000, 44100, 16000])
def test_drain_releases_held_audio_and_decoding_goes_on(rate):
    decoder = AudioDecoder(AudioFormat(rate, 1, FLOAT32))
    first = decoder.decode(encode(sine(300, rate, 0.5), FLOAT32))
    drained = decoder.drain()
    assert abs(len(first) + len(drained) - TARGET_SAMPLE_RATE * 0.5) <= 1  # all of the first half
    second = decoder.decode(encode(sine(300, rate, 0.5), FLOAT32))
    total = len(first) + len(drained) + len(second) + len(decoder.flush())
    assert abs(total - TARGET_SAMPLE_RATE) <= 2 and decoder.samples_out == total
