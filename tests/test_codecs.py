"""The codec layer (audio/codecs.py, g711.py, containers.py): real speech encoded by PyAV
(FFmpeg) into each format, decoded as it arrives in pieces cut at random byte offsets."""

import numpy as np
import pytest

pytest.importorskip("av", reason="the server extra is needed")

import av  # noqa: E402
import soxr  # noqa: E402

from qwen3_asr_stream.audio import g711  # noqa: E402
from qwen3_asr_stream.audio.codecs import DEEPGRAM_ENCODINGS, AudioEncoding, deepgram_encoding  # noqa: E402
from qwen3_asr_stream.audio.containers import MAX_UNIT_BYTES, decode_file  # noqa: E402
from qwen3_asr_stream.audio.input import AudioDecoder, AudioFormat, CorruptStream, InvalidAudio  # noqa: E402
from qwen3_asr_stream.testing.codecs import (  # noqa: E402
    corrupt_middle, cut_middle, encode, random_cuts, snr_db, video_only)
from qwen3_asr_stream.testing.speech import synthesize  # noqa: E402

# Measured on eSpeak NG speech (see README, "Codecs"): the lowest SNR each codec gives at its
# encoder's default settings, less a margin. G.711 is ~38 dB by its 8-bit log quantizer.
SNR_DB = {"mulaw": 35.0, "alaw": 35.0, "ogg_opus": 20.0, "webm_opus": 20.0, "flac": 90.0, "wav": 90.0,
          "mp3": 13.0, "m4a": 18.0}
STREAMED = {"ogg_opus": "OGG_OPUS", "webm_opus": "WEBM_OPUS", "flac": "FLAC"}


@pytest.fixture(scope="module")
def speech():
    audio, rate = synthesize("the quick brown fox jumps over the lazy dog near the river bank")
    return audio, rate


def reference_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    return soxr.resample(samples.astype(np.float32) / 32768, rate, 16000)


def decode_pieces(fmt: AudioFormat, pieces) -> tuple[np.ndarray, AudioDecoder, Exception | None]:
    decoder = AudioDecoder(fmt)
    out = [decoder.decode(p) for p in pieces]
    tail, error = decoder.finish()
    return np.concatenate(out + [tail]), decoder, error


@pytest.mark.parametrize("table,codec", [(g711.ULAW, "pcm_mulaw"), (g711.ALAW, "pcm_alaw")])
def test_g711_tables_equal_ffmpeg(table, codec):
    decoder = av.CodecContext.create(codec, "r")
    decoder.sample_rate, decoder.layout = 8000, "mono"
    ffmpeg = np.concatenate([f.to_ndarray()[0] for f in decoder.decode(av.Packet(bytes(range(256))))])
    assert np.array_equal(table, ffmpeg.astype(np.float32) / 32768)


@pytest.mark.parametrize("fmt", ["mulaw", "alaw"])
def test_g711_8khz_snr_and_duration(speech, fmt):
    audio, rate = speech
    pcm8k = soxr.resample(audio.astype(np.float32), rate, 8000).astype(np.int16)
    data = encode(pcm8k, 8000, fmt)
    out, decoder, error = decode_pieces(AudioFormat(8000, 1, fmt.upper()), random_cuts(data, np.random.default_rng(0)))
    assert error is None
    assert decoder.received_ms == pytest.approx(1000 * len(pcm8k) / 8000)
    snr, lag = snr_db(reference_16k(pcm8k, 8000), out)
    assert lag == 0 and SNR_DB[fmt] < snr < 40


@pytest.mark.parametrize("fmt", sorted(STREAMED))
@pytest.mark.parametrize("declared", ["named", "container"])
def test_streams_cut_anywhere_decode_like_whole(speech, fmt, declared):
    audio, rate = speech
    data = encode(audio, rate, fmt)
    encoding = STREAMED[fmt] if declared == "named" else "CONTAINER"
    whole, _, _ = decode_pieces(AudioFormat(0, 1, encoding), [data])
    for seed in range(3):
        out, decoder, error = decode_pieces(AudioFormat(0, 1, encoding),
                                            random_cuts(data, np.random.default_rng(seed)))
        assert error is None
        assert np.array_equal(out, whole)
    assert abs(decoder.received_ms - 1000 * len(audio) / rate) < 20
    snr, lag = snr_db(reference_16k(audio, rate), out)
    assert abs(lag) <= 1 and snr > SNR_DB[fmt]


@pytest.mark.parametrize("fmt", ["ogg_vorbis", "webm_vorbis", "mp3", "m4a"])
def test_container_streams_any_file(speech, fmt):
    """CONTAINER: what cannot be decoded as it arrives (Vorbis, MP3, AAC) is decoded at the end."""
    audio, rate = speech
    data = encode(audio, rate, fmt)
    out, decoder, error = decode_pieces(AudioFormat(0, 1, "CONTAINER"), random_cuts(data, np.random.default_rng(0)))
    assert error is None and abs(decoder.received_ms - 1000 * len(audio) / rate) < 20
    assert snr_db(reference_16k(audio, rate), out)[0] > 10
    if "vorbis" in fmt:  # named as Opus, it is refused
        _, error = first_error(AudioFormat(0, 1, "OGG_OPUS" if "ogg" in fmt else "WEBM_OPUS"), [data])
        assert isinstance(error, InvalidAudio) and "Vorbis" in str(error) or "A_VORBIS" in str(error)


@pytest.mark.parametrize("fmt", ["mp3", "m4a", "wav", "flac", "ogg_opus", "webm_opus"])
def test_whole_files_exact_in_time(speech, fmt):
    audio, rate = speech
    samples, file_rate = decode_file(encode(audio, rate, fmt), max_seconds=60)
    assert abs(len(samples) / file_rate - len(audio) / rate) < 0.020
    snr, lag = snr_db(reference_16k(audio, rate), soxr.resample(samples[:, 0], file_rate, 16000))
    assert abs(lag) <= 1 and snr > SNR_DB[fmt]


@pytest.mark.parametrize("rate,bit_rate", [(22050, None), (16000, 32000), (44100, 128000), (8000, 16000)])
def test_mp3_streams_sample_for_sample_as_ffmpeg_reads_the_file(speech, rate, bit_rate):
    """CONTAINER MP3 is decoded as it arrives; the LAME tag's delay and padding are removed as
    FFmpeg's demuxer removes them."""
    audio = soxr.resample(speech[0].astype(np.float32), speech[1], rate).clip(-32768, 32767).astype(np.int16)
    data = encode(audio, rate, "mp3", bit_rate=bit_rate)
    whole, file_rate = decode_file(data, max_seconds=60)
    decoder = AudioDecoder(AudioFormat(0, 1, "CONTAINER"))
    half = sum(len(decoder.decode(p)) for p in random_cuts(data[:len(data) // 2], np.random.default_rng(0)))
    assert half > 0.3 * len(audio) * 16000 / rate  # samples come as the bytes do
    from qwen3_asr_stream.audio.mp3 import Mp3Reader

    reader = Mp3Reader()
    out = np.concatenate([reader.feed(p) for p in random_cuts(data, np.random.default_rng(1))] + [reader.finish()])
    assert reader.rate == file_rate and np.array_equal(out, whole)
    assert abs(len(out) / rate - len(audio) / rate) < 0.020


def test_samples_arrive_with_the_bytes(speech):
    """A streamed container gives samples as soon as their page / block / frame is whole."""
    audio, rate = speech
    for fmt in STREAMED:
        data = encode(audio, rate, fmt)
        decoder = AudioDecoder(AudioFormat(0, 1, STREAMED[fmt]))
        half = sum(len(decoder.decode(p)) for p in random_cuts(data[:len(data) // 2], np.random.default_rng(0)))
        assert half > 0.3 * len(audio) * 16000 / rate, fmt


# -- bad input -----------------------------------------------------------------------------------

def first_error(fmt: AudioFormat, pieces) -> tuple[int, Exception]:
    """Samples decoded before the first error, and the error (from decode or finish)."""
    decoder = AudioDecoder(fmt)
    n = 0
    try:
        for p in pieces:
            n += len(decoder.decode(p))
    except InvalidAudio as exc:
        return n, exc
    tail, error = decoder.finish()
    return n + len(tail), error


@pytest.mark.parametrize("fmt", sorted(STREAMED))
def test_not_the_declared_codec(speech, fmt):
    audio, rate = speech
    wav = encode(audio, rate, "wav")
    n, error = first_error(AudioFormat(0, 1, STREAMED[fmt]), random_cuts(wav, np.random.default_rng(0)))
    assert n == 0 and isinstance(error, InvalidAudio)
    assert "not" in str(error) and fmt.split("_")[0].lower() in str(error).lower()


# Flipped bytes: Ogg pages and FLAC frames carry checksums; WebM has none and an Opus packet
# decodes whatever its bytes are, so damage there is found only when it breaks the structure
# (missing bytes: the next element is not where its size says).
@pytest.mark.parametrize("fmt,damage", [("ogg_opus", corrupt_middle), ("flac", corrupt_middle),
                                        ("ogg_opus", cut_middle), ("flac", cut_middle), ("webm_opus", cut_middle)])
def test_damage_mid_stream_ends_with_an_error_after_the_audio_before(speech, fmt, damage):
    audio, rate = speech
    data = encode(audio, rate, fmt)
    n, error = first_error(AudioFormat(0, 1, STREAMED[fmt]), random_cuts(damage(data), np.random.default_rng(0)))
    assert isinstance(error, CorruptStream), error
    assert "corrupt" in str(error) and "byte" in str(error)
    assert 0.3 * len(audio) * 16000 / rate < n < 0.7 * len(audio) * 16000 / rate


@pytest.mark.parametrize("fmt", sorted(STREAMED))
def test_truncated_end_keeps_what_was_whole(speech, fmt):
    audio, rate = speech
    data = encode(audio, rate, fmt)
    cut = len(data) - 100
    out, decoder, error = decode_pieces(AudioFormat(0, 1, STREAMED[fmt]), random_cuts(data[:cut], np.random.default_rng(0)))
    assert isinstance(error, CorruptStream) and "ended inside" in str(error)
    assert len(out) > 0.8 * len(audio) * 16000 / rate


def test_container_without_audio_track():
    video = video_only("webm")
    _, error = first_error(AudioFormat(0, 1, "WEBM_OPUS"), [video])
    assert isinstance(error, InvalidAudio) and "no audio track" in str(error)
    with pytest.raises(InvalidAudio, match="no audio track"):
        decode_file(video_only("mp4"), max_seconds=60)


@pytest.mark.parametrize("fmt", sorted(STREAMED))
def test_declared_rate_contradicting_the_container(speech, fmt):
    audio, rate = speech
    data = encode(audio, rate, fmt)
    _, error = first_error(AudioFormat(8000, 1, STREAMED[fmt]), [data])
    assert isinstance(error, InvalidAudio) and "8000 Hz" in str(error) and "leave it 0" in str(error)
    right = 48000 if "opus" in fmt else rate
    _, error = first_error(AudioFormat(right, 1, STREAMED[fmt]), [data])
    assert error is None


def test_whole_file_errors(speech):
    audio, rate = speech
    with pytest.raises(InvalidAudio, match="not audio this server reads"):
        decode_file(b"hello, this is text and not audio at all" * 10, max_seconds=60)
    with pytest.raises(InvalidAudio, match="longer than"):
        decode_file(encode(audio, rate, "mp3"), max_seconds=1)
    decoder = AudioDecoder(AudioFormat(0, 1, "CONTAINER"), max_file_bytes=1000)
    with pytest.raises(InvalidAudio, match="larger than 1000 bytes"):
        for piece in random_cuts(encode(audio, rate, "m4a"), np.random.default_rng(0)):
            decoder.decode(piece)


def test_one_unit_is_bounded(speech):
    # A FLAC frame that never ends (no next frame header) is refused at the bound.
    audio, rate = speech
    flac = encode(audio, rate, "flac")
    start = flac.index(b"\xff\xf8")
    decoder = AudioDecoder(AudioFormat(0, 1, "FLAC"))
    decoder.decode(flac[:start + 16])
    with pytest.raises(CorruptStream, match="do not form a whole unit"):
        for _ in range(MAX_UNIT_BYTES // 65536 + 1):
            decoder.decode(bytes(65536))
    # A WebM element larger than the bound is refused before it is buffered.
    webm = AudioDecoder(AudioFormat(0, 1, "WEBM_OPUS"))
    ebml = bytes.fromhex("1a45dfa3") + bytes([0x80 | 7]) + bytes.fromhex("4282") + bytes([0x84]) + b"webm"
    big = bytes.fromhex("a3") + bytes([0x01]) + (MAX_UNIT_BYTES + 1).to_bytes(7, "big")
    with pytest.raises(CorruptStream, match="larger than"):
        webm.decode(ebml + big)


def test_streams_do_not_share_state(speech):
    audio, rate = speech
    data = encode(audio, rate, "ogg_opus")
    good, bad = AudioDecoder(AudioFormat(0, 1, "OGG_OPUS")), AudioDecoder(AudioFormat(0, 1, "OGG_OPUS"))
    damaged = corrupt_middle(data)
    out, failed = [], False
    for a, b in zip(random_cuts(data, np.random.default_rng(0), 200, 201), random_cuts(damaged, np.random.default_rng(0), 200, 201)):
        out.append(good.decode(a))
        if not failed:
            try:
                bad.decode(b)
            except CorruptStream:
                failed = True
    assert failed
    whole, _, _ = decode_pieces(AudioFormat(0, 1, "OGG_OPUS"), [data])
    assert np.array_equal(np.concatenate(out + [good.finish()[0]]), whole)


def test_deepgram_names():
    assert deepgram_encoding(None) is AudioEncoding.CONTAINER
    assert deepgram_encoding("mulaw") is AudioEncoding.MULAW and deepgram_encoding("alaw") is AudioEncoding.ALAW
    assert deepgram_encoding("opus") is deepgram_encoding("ogg-opus") is AudioEncoding.OGG_OPUS
    assert deepgram_encoding("flac") is AudioEncoding.FLAC
    assert set(DEEPGRAM_ENCODINGS) >= {None, "mulaw", "alaw", "opus", "ogg-opus", "flac"}
    with pytest.raises(ValueError, match="amr-nb.*not supported"):
        deepgram_encoding("amr-nb")
