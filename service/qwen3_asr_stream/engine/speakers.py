"""Speaker embedding models: sliding windows of an utterance's audio -> unit vectors.

A speaker model maps audio to embeddings whose cosine similarity is high for one voice
and lower between voices. The diarization stage (``session/diarization.py``) embeds
windows of each final utterance and clusters them online; it sees only
:class:`SpeakerEncoder`.

- ``resemblyzer``: the GE2E speaker encoder (3-layer LSTM over 40 mel bands, 256-d
  embeddings) whose trained weights ship inside the ``resemblyzer`` wheel (17 MB), so it
  works offline with no download. Windows: 1.6 s of audio every 0.4 s (an utterance
  shorter than one window is one window, zero-padded).
- ``wespeaker-resnet34``: WeSpeaker's ResNet34 (``model/wespeaker.py``, Kaldi filter banks
  ``audio/fbank.py``), the embedding model of pyannote's diarization pipelines, loaded from
  pyannote's published checkpoint (``pyannote/wespeaker-voxceleb-resnet34-LM``:
  ``pytorch_model.bin``, a Lightning checkpoint of ``WeSpeakerResNet34``) in a folder or the
  Hugging Face cache. Same window grid as resemblyzer. Parity with pyannote.audio's
  implementation: ``tests/test_wespeaker.py``.

A model is named ``NAME[:SOURCE]`` (``SpeakerModelOptions``, ``load_speaker_model``); each
carries its clustering thresholds (``threshold``, ``change_threshold``: cosine similarities
differ between models). Both run on the speaker worker's thread with ``threads`` torch threads
(default 1), which leaves the engine its own.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

SPEAKER_MODELS = ("resemblyzer", "wespeaker-resnet34")
WESPEAKER_REPO = "pyannote/wespeaker-voxceleb-resnet34-LM"  # the default SOURCE of wespeaker-resnet34
MAX_SPEAKERS = 32  # the most speakers a stream may ask for (the server's --max-speakers is at most this)
MAX_SPEAKER_THREADS = 64


class SpeakerEncoder(Protocol):
    name: str
    dim: int
    hop: int  # samples between window starts
    width: int  # samples of a window
    threshold: float  # clustering: cosine similarity to a speaker to be that speaker (DiarizationOptions)
    change_threshold: float  # a change inside an utterance: its sides' similarity below this

    def features(self, audio: np.ndarray, first: int = 0, complete_only: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
        """16 kHz mono float32 ``(samples,)`` -> the model's input for each window from index
        ``first`` on (window k starts at ``k * hop``), ``(n, ...)``, and ``(n, 2)`` their
        ``[start, end)`` in samples (clamped to the audio). ``complete_only``: only windows wholly
        inside the audio (a stream's audio so far); else also the last ones, padded, that cover
        at least 3/4 of a window (at least one window for any audio)."""
        ...

    def embed(self, features: np.ndarray) -> np.ndarray:
        """``(n, ...)`` features of windows (of any utterances, batched) -> ``(n, dim)`` unit embeddings."""
        ...


def window_count(samples: int, hop: int, width: int, complete_only: bool) -> int:
    """How many windows (from index 0) :meth:`SpeakerEncoder.windows` gives for ``samples`` of audio."""
    if complete_only:
        return 0 if samples < width else (samples - width) // hop + 1
    reach = samples - (3 * width) // 4
    return 1 if reach < 0 else reach // hop + 1


def window_audio(audio: np.ndarray, hop: int, width: int, first: int, complete_only: bool, repeat: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``(n, width)`` float32 samples of the windows from index ``first`` (``window_count``'s) and
    ``(n, 2)`` their ``[start, end)`` clamped to the audio; a window past the audio's end is filled
    with zeros, or (``repeat``) by repeating its own audio."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    starts = range(first * hop, window_count(audio.shape[0], hop, width, complete_only) * hop, hop)
    pieces = np.zeros((len(starts), width), np.float32)
    for i, start in enumerate(starts):
        piece = audio[start: start + width]
        if repeat and piece.shape[0]:
            pieces[i] = np.resize(piece, width)
        else:
            pieces[i, : piece.shape[0]] = piece
    spans = np.array([[s, min(s + width, audio.shape[0])] for s in starts], dtype=np.int64).reshape(-1, 2)
    return pieces, spans


class ResemblyzerEncoder:
    """GE2E from the ``resemblyzer`` wheel (its packaged weights), on the CPU. Each window is
    its own 1.6 s of audio through resemblyzer's mel front end and LSTM (its "partials", but
    each computed alone so that a stream's windows can be embedded as its audio arrives)."""

    name = "resemblyzer"
    dim = 256
    hop = 6400  # 0.4 s
    width = 25600  # 1.6 s: resemblyzer's 160 mel frames of 10 ms
    # Measured on eSpeak NG voices (tests/test_diarization.py): 0.83-0.91 within a voice, 0.58-0.75 between.
    threshold = 0.8
    change_threshold = 0.7

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads  # torch threads of the thread that calls ``windows`` (set per thread)
        try:
            from resemblyzer import VoiceEncoder, audio
        except ImportError as exc:
            raise RuntimeError("the resemblyzer speaker model needs the resemblyzer package: "
                               "pip install --no-deps resemblyzer==0.1.4 && pip install librosa") from exc
        import librosa
        import torch

        self._encoder = VoiceEncoder("cpu", verbose=False)
        # resemblyzer's front end (librosa's power mel spectrogram: 25 ms Hann windows every 10 ms,
        # 40 Slaney mel bands) in torch, so that a batch of windows is a few torch calls that
        # release the GIL (the engine thread runs beside it); tests/test_diarization_units.py
        # checks it against resemblyzer's own.
        self._mel_basis = torch.from_numpy(librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)).float()
        self._window = torch.hann_window(400, periodic=True)
        self._reference_mel = audio.wav_to_mel_spectrogram  # (samples,) -> (frames, 40), for the test

    def mel(self, pieces: np.ndarray) -> np.ndarray:
        """``(n, width)`` audio -> ``(n, width // 160, 40)`` resemblyzer mel frames."""
        import torch

        with torch.inference_mode():
            spec = torch.stft(torch.from_numpy(pieces), 400, 160, window=self._window, center=True,
                              pad_mode="constant", return_complex=True).abs().pow(2)  # (n, 201, frames)
            return (self._mel_basis @ spec).transpose(1, 2)[:, : self.width // 160].numpy()

    def features(self, audio: np.ndarray, first: int = 0, complete_only: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        torch.set_num_threads(self.threads)  # per calling thread (OpenMP): the engine's threads keep theirs
        pieces, spans = window_audio(audio, self.hop, self.width, first, complete_only, repeat=False)
        return self.mel(pieces), spans

    def embed(self, features: np.ndarray) -> np.ndarray:
        import torch

        if features.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            return self._encoder(torch.from_numpy(features)).numpy().astype(np.float32)


def embed_windows(encoder: SpeakerEncoder, audio: np.ndarray, first: int = 0, complete_only: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(n, dim)`` unit embeddings and ``(n, 2)`` spans of one audio's windows (``features`` then ``embed``)."""
    features, spans = encoder.features(audio, first, complete_only)
    return encoder.embed(features), spans


class WeSpeakerEncoder:
    """WeSpeaker ResNet34 on the CPU. Each window: its 1.6 s of audio (a window running past the
    audio's end is filled by repeating its audio, as WeSpeaker pads short segments; silence would
    give log energies of -16 that swamp the mean normalization), Kaldi filter banks of the int16-scaled
    samples minus their mean over the window's frames, then the network; embeddings normalized."""

    name = "wespeaker-resnet34"
    dim = 256
    hop = 6400  # 0.4 s
    width = 25600  # 1.6 s: 158 frames of filter banks
    # Not measured here (no trained weights can be downloaded where this was written): a starting
    # point from pyannote's speaker-diarization-3.1, whose clustering joins unit WeSpeaker embeddings
    # closer than 0.7046 (Euclidean), i.e. cosine similarity above 1 - 0.7046^2 / 2 = 0.75 (of ~5-10 s
    # segments; 1.6 s windows average to turns here). Measure on your audio; serve --speaker-threshold.
    threshold = 0.75
    change_threshold = 0.65

    def __init__(self, network, fbank_options, threads: int = 1, device: str = "cpu") -> None:
        self.threads = threads
        self.device = device  # the network's; the filter banks are computed on the CPU
        self.network = network.eval().to(device)
        self.fbank_options = fbank_options

    def window_audio(self, audio: np.ndarray, first: int, complete_only: bool) -> tuple[np.ndarray, np.ndarray]:
        """``(n, width)`` the windows' samples, each past the audio's end repeating its audio, and
        ``(n, 2)`` their spans (see ``SpeakerEncoder.features``)."""
        return window_audio(audio, self.hop, self.width, first, complete_only, repeat=True)

    def features(self, audio: np.ndarray, first: int = 0, complete_only: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from ..audio.fbank import fbank

        torch.set_num_threads(self.threads)  # per calling thread (OpenMP): the engine's threads keep theirs
        pieces, spans = self.window_audio(audio, first, complete_only)
        with torch.inference_mode():
            banks = fbank(torch.from_numpy(pieces) * 32768.0, self.fbank_options)  # (n, frames, mels)
            return (banks - banks.mean(dim=1, keepdim=True)).numpy(), spans

    def embed(self, features: np.ndarray) -> np.ndarray:
        import torch

        if features.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        with torch.inference_mode():
            out = self.network(torch.from_numpy(features).to(self.device))
            return torch.nn.functional.normalize(out, dim=-1).float().cpu().numpy()


class _Opaque(dict):
    """What an object of another package (pyannote's task specifications, enums) in a checkpoint
    becomes: inert, so that loading runs none of its code and needs none of its packages."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def __setstate__(self, state) -> None:
        pass


class _CheckpointUnpickler(pickle.Unpickler):
    """Torch's tensors and plain containers as they are; any other class as ``_Opaque``."""

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict" or module.split(".")[0] == "torch":
            return super().find_class(module, name)
        return _Opaque


class _checkpoint_pickle:  # the pickle module torch.load uses for pyannote checkpoints
    Unpickler = _CheckpointUnpickler
    load = pickle.load


# pyannote's WeSpeakerResNet34 hyperparameters this implementation computes as they are (its defaults).
_FRONT_END = {"sample_rate": 16000, "num_channels": 1, "num_mel_bins": 80, "frame_length": 25, "frame_shift": 10,
              "window_type": "hamming", "use_energy": False, "round_to_power_of_two": True, "snip_edges": True,
              "fbank_centering_span": None}


def _wespeaker_hint() -> str:
    return (f"download {WESPEAKER_REPO} where the network allows (`hf download {WESPEAKER_REPO}`) "
            f"and pass its folder: --speaker-model wespeaker-resnet34:FOLDER; "
            f"a random-weight one (no real speakers): python -m qwen3_asr_stream.testing.speaker_checkpoints "
            f"--out /tmp/wespeaker")


def wespeaker_folder(source: str | Path) -> Path:
    """The folder of a WeSpeaker checkpoint: ``source`` a folder holding ``pytorch_model.bin`` or a Hub
    repo id (the Hugging Face cache when offline); CheckpointError, saying what to download, without."""
    from ..checkpoint import CheckpointError, resolve

    folder = resolve(source, "speaker model", patterns=["pytorch_model.bin", "config.yaml"], hint=_wespeaker_hint())
    if not (folder / "pytorch_model.bin").is_file():
        raise CheckpointError(f"speaker model folder {str(folder)!r} has no pytorch_model.bin; {_wespeaker_hint()}")
    return folder


def load_wespeaker(folder: Path, threads: int = 1, device: str = "cpu") -> WeSpeakerEncoder:
    """WeSpeaker ResNet34 from pyannote's published checkpoint in ``folder`` (``wespeaker_folder``);
    CheckpointError when it is not this model."""
    import torch

    from ..audio.fbank import FbankOptions
    from ..checkpoint import CheckpointError
    from ..model.wespeaker import WeSpeakerDims, WeSpeakerResNet

    path = folder / "pytorch_model.bin"
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, pickle_module=_checkpoint_pickle)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise CheckpointError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    meta = checkpoint.get("pyannote.audio", {}) if isinstance(checkpoint, dict) else {}
    architecture = meta.get("architecture", {}).get("class") if isinstance(meta, dict) else None
    if architecture not in (None, "WeSpeakerResNet34"):
        raise CheckpointError(f"{path} holds pyannote's {architecture}, not WeSpeakerResNet34")
    hyper = dict(checkpoint.get("hyper_parameters") or {}) if isinstance(checkpoint, dict) else {}
    differ = {k: hyper[k] for k in _FRONT_END if k in hyper and hyper[k] != _FRONT_END[k]}
    if differ:
        raise CheckpointError(f"{path}: front-end settings this server does not implement: {differ}")
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict")
    state = {k.removeprefix("resnet."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    network = WeSpeakerResNet(WeSpeakerDims())
    state.pop("projection.weight", None)  # WeSpeaker's training head, where a checkpoint keeps it
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # missing, unexpected or misshapen tensors
        raise CheckpointError(f"{path} is not a WeSpeaker ResNet34 checkpoint: {' '.join(str(exc).split())[:400]}") from None
    return WeSpeakerEncoder(network, FbankOptions(), threads, device)


@dataclass(frozen=True)
class SpeakerModelOptions:
    """The server's speaker model (``serve --speaker-model / --speaker-threshold / --speaker-device /
    --speaker-threads``), checked here once; ``load_speaker_model`` loads it."""

    spec: str  # NAME[:SOURCE]: resemblyzer, or wespeaker-resnet34[:FOLDER or HUB_REPO]
    threshold: float | None = None  # the clustering threshold instead of the model's own
    device: str = "cpu"  # where WeSpeaker's network runs (resemblyzer: the CPU only)
    threads: int = 1  # torch threads of the speaker thread (features, and the network on the CPU)

    @property
    def name(self) -> str:
        return self.spec.partition(":")[0]

    @property
    def source(self) -> str:
        return self.spec.partition(":")[2]

    def __post_init__(self) -> None:
        from ..checkpoint import check_device

        if self.name not in SPEAKER_MODELS or self.name == "resemblyzer" and self.source:
            raise ValueError(f"unknown speaker model {self.spec!r}; this server knows resemblyzer and "
                             f"wespeaker-resnet34[:FOLDER or HUB_REPO]")
        if self.threshold is not None and not -1 < self.threshold < 1:
            raise ValueError(f"--speaker-threshold is a cosine similarity, between -1 and 1; got {self.threshold}")
        if self.name == "resemblyzer" and self.device != "cpu":
            raise ValueError("the resemblyzer speaker model runs on the CPU only; leave --speaker-device cpu")
        check_device(self.device, "--speaker-device")
        if not 1 <= self.threads <= MAX_SPEAKER_THREADS:
            raise ValueError(f"--speaker-threads must be 1-{MAX_SPEAKER_THREADS}, got {self.threads}")


def locate_speaker_model(options: SpeakerModelOptions) -> Path | None:
    """The checkpoint folder of the speaker model (None for resemblyzer: the wheel's weights), nothing
    loaded; CheckpointError, saying what to download, for missing weights."""
    if options.name == "resemblyzer":
        return None
    return wespeaker_folder(options.source or WESPEAKER_REPO)


def load_speaker_model(options: SpeakerModelOptions) -> SpeakerEncoder:
    """The speaker model ``options`` names (``resemblyzer``: the wheel's weights; ``wespeaker-resnet34``:
    default source ``WESPEAKER_REPO``), with ``options.threshold`` as its clustering threshold when
    given (the change threshold keeps its distance below). CheckpointError for missing weights."""
    folder = locate_speaker_model(options)
    encoder: SpeakerEncoder = (ResemblyzerEncoder(options.threads) if folder is None
                               else load_wespeaker(folder, options.threads, options.device))
    if options.threshold is not None:
        encoder.change_threshold = max(-0.99, options.threshold - (encoder.threshold - encoder.change_threshold))
        encoder.threshold = options.threshold
    return encoder
