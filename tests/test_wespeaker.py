"""WeSpeaker ResNet34, the production speaker model: parity with pyannote.audio's implementation
(the reference: its ``WeSpeakerResNet34`` and torchaudio's Kaldi filter banks) on random weights,
its loading from pyannote's checkpoint layout, and diarization through a real server with it.

torchaudio comes from PyPI, whose wheel is the CUDA build: its compiled extension cannot load next
to the CPU torch, so .ci/run removes it; torchaudio then runs without it (as it does when the
extension is elsewhere), and ``compliance.kaldi`` is pure torch, so the reference is unchanged.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from qwen3_asr_stream.audio.fbank import FbankOptions, fbank
from qwen3_asr_stream.checkpoint import CheckpointError
from qwen3_asr_stream.engine.speakers import (SpeakerModelOptions, WeSpeakerEncoder, embed_windows,
                                              load_speaker_model)
from qwen3_asr_stream.testing.speaker_checkpoints import randomize_batch_norms, write_wespeaker

RATE = 16000
# pyannote.audio warns on import that torchcodec (its file decoding, unused here) cannot load next to the CPU torch.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:pyannote.audio.core.io")


def kaldi():
    return pytest.importorskip("torchaudio.compliance.kaldi")


@pytest.mark.parametrize("samples", [400, 16000, 25600, 40321])
def test_fbank_equals_torchaudio_kaldi(samples):
    """Our filter banks = torchaudio.compliance.kaldi.fbank with pyannote's settings, on random audio
    at int16 scale (as pyannote feeds it), to float32 rounding."""
    reference = kaldi()
    audio = torch.from_numpy(np.random.default_rng(samples).standard_normal((3, samples)).astype(np.float32))
    audio = audio * 3000.0
    ours = fbank(audio, FbankOptions())
    theirs = torch.stack([reference.fbank(a[None], num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0,
                                          window_type="hamming", use_energy=False, sample_frequency=RATE)
                          for a in audio])
    assert ours.shape == theirs.shape == (3, FbankOptions().frames(samples), 80)
    # float32 FFTs of int16-scale audio in another order: log energies agree to ~1e-6 on average,
    # and to 1e-3 (0.1 % of an energy) in the few low-energy bins where rounding shows most.
    difference = (ours - theirs).abs()
    assert float(difference.max()) < 1e-3 and float(difference.mean()) < 1e-5, difference.max()


@pytest.fixture(scope="module")
def reference_checkpoint(tmp_path_factory):
    """pyannote.audio's WeSpeakerResNet34, random weights (batch norms too), saved as pyannote's
    convert script writes the published pytorch_model.bin; returns (model, folder)."""
    kaldi()
    lightning = pytest.importorskip("lightning")
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(1)
    model = WeSpeakerResNet34()
    with torch.no_grad():
        for p in model.resnet.seg_1.parameters():
            p.normal_(0, 0.02)
        randomize_batch_norms(model, torch.Generator().manual_seed(1))
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    model.eval()
    checkpoint = {"state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    folder = tmp_path_factory.mktemp("wespeaker")
    torch.save(checkpoint, folder / "pytorch_model.bin")
    return model, folder


def test_embeddings_equal_pyannote_on_random_weights(reference_checkpoint, espeak):
    """Windows of real speech and of noise: our front end + network = pyannote's forward (waveform in)."""
    import soxr

    model, folder = reference_checkpoint
    encoder = load_speaker_model(SpeakerModelOptions(f"wespeaker-resnet34:{folder}"))
    assert isinstance(encoder, WeSpeakerEncoder) and encoder.dim == 256
    speech, rate = espeak("the meeting starts with the budget for next year and then the hiring plan")
    speech = soxr.resample(speech.astype(np.float32) / 32768, rate, RATE).astype(np.float32)
    noise = 0.05 * np.random.default_rng(0).standard_normal(3 * RATE).astype(np.float32)
    for audio in (speech, noise, speech[: RATE]):  # the last: one window, shorter than a window
        embeddings, spans = embed_windows(encoder, audio)
        pieces, same_spans = encoder.window_audio(audio, 0, False)
        assert np.array_equal(spans, same_spans) and len(embeddings) == len(pieces) >= 1
        with torch.inference_mode():
            theirs = torch.nn.functional.normalize(model(torch.from_numpy(pieces)[:, None]), dim=-1).numpy()
        assert np.allclose(embeddings, theirs, atol=1e-4), float(np.abs(embeddings - theirs).max())
        assert np.all(np.sum(embeddings * theirs, axis=1) > 0.9999)
    # Embedded as the audio arrives (complete windows of a prefix, then the rest) = all at once.
    whole = embed_windows(encoder, speech)[0]
    head = embed_windows(encoder, speech[:50000], complete_only=True)[0]
    rest = embed_windows(encoder, speech, first=len(head))[0]
    assert np.allclose(np.concatenate([head, rest]), whole, atol=1e-5)


def test_the_published_checkpoint_loads_without_pyannote_or_torchaudio(reference_checkpoint):
    """pyannote's file pickles its own objects (task specifications, enums): our loader reads only the
    tensors, in a process where importing pyannote or torchaudio fails."""
    import subprocess
    import sys

    _, folder = reference_checkpoint
    code = ("import sys; sys.modules['pyannote'] = None; sys.modules['torchaudio'] = None\n"
            "from qwen3_asr_stream.engine.speakers import SpeakerModelOptions, load_speaker_model\n"
            f"print(load_speaker_model(SpeakerModelOptions('wespeaker-resnet34:{folder}')).name)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "wespeaker-resnet34", done.stderr


def test_loading_errors_say_what_to_do(tmp_path):
    with pytest.raises(CheckpointError, match="hf download pyannote/wespeaker-voxceleb-resnet34-LM"):
        load_speaker_model(SpeakerModelOptions(f"wespeaker-resnet34:{tmp_path / 'absent'}"))
    with pytest.raises(CheckpointError, match="no pytorch_model.bin"):
        load_speaker_model(SpeakerModelOptions(f"wespeaker-resnet34:{tmp_path}"))
    torch.save({"state_dict": {"resnet.conv1.weight": torch.zeros(3)}}, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="not a WeSpeaker ResNet34"):
        load_speaker_model(SpeakerModelOptions(f"wespeaker-resnet34:{tmp_path}"))
    with pytest.raises(ValueError, match="unknown speaker model"):
        SpeakerModelOptions("ecapa")
    with pytest.raises(ValueError, match="unknown speaker model"):
        SpeakerModelOptions("resemblyzer:/some/folder")  # its weights are the wheel's
    with pytest.raises(ValueError, match="--speaker-threads must be 1-64"):
        SpeakerModelOptions("resemblyzer", threads=0)
    folder = write_wespeaker(tmp_path / "random")
    encoder = load_speaker_model(SpeakerModelOptions(f"wespeaker-resnet34:{folder}", threshold=0.6, threads=2))
    assert encoder.threshold == 0.6 and encoder.change_threshold == pytest.approx(0.5) and encoder.threads == 2


def test_a_server_with_wespeaker_diarizes_a_stream(engine, espeak, tmp_path):
    """serve's speaker model from a folder in pyannote's layout (random weights, so which speaker
    is meaningless): every final of a stream with diarization carries speaker labels."""
    pytest.importorskip("webrtcvad")
    import soxr

    from qwen3_asr_client import AsyncStreamingClient, AudioFormat, RecognitionOptions, Result
    from qwen3_asr_stream.server.options import ServerOptions
    from qwen3_asr_stream.testing.harness import ServerThread

    encoder = load_speaker_model(SpeakerModelOptions(f"wespeaker-resnet34:{write_wespeaker(tmp_path / 'wespeaker')}"))
    parts = [np.zeros(RATE // 2, np.float32)]
    for text, voice in (("good morning everyone, let us start with the budget", "en-us"),
                        ("thank you, i have the numbers from the finance team", "en-us+f2")):
        speech, rate = espeak(text, voice)
        parts += [soxr.resample(speech.astype(np.float32) / 32768, rate, RATE).astype(np.float32),
                  np.zeros(int(1.3 * RATE), np.float32)]
    pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2").tobytes()
    options = RecognitionOptions(interim_results=False, word_timestamps=False, diarization=True, max_speakers=4)

    async def run(address):
        async with AsyncStreamingClient(address) as client:
            step = AudioFormat(RATE).chunk_bytes(100)
            chunks = [pcm[i:i + step] for i in range(0, len(pcm), step)]
            return [i async for i in client.stream(chunks, AudioFormat(RATE), options)]

    with ServerThread(ServerOptions(port=0), {"tiny": engine}, None, encoder) as server:
        finals = [i for i in asyncio.run(run(server.address)) if isinstance(i, Result) and i.is_final]
    assert len(finals) == 2, [(f.start_ms, f.end_ms) for f in finals]
    for final in finals:
        assert final.speaker in range(1, 5) and final.speaker_turns, final
        assert all(t.speaker in range(1, 5) and t.start_ms < t.end_ms for t in final.speaker_turns)
