"""The Realtime transcription session as OpenAI's two shapes describe it, and what it means here.

``update_ga`` applies a GA ``session.update`` (``session.type = "transcription"``,
``audio.input`` {format, transcription, turn_detection, noise_reduction}, ``include``),
``update_beta`` the older ``transcription_session.update`` (``input_audio_format``,
``input_audio_transcription``, ``turn_detection``); both give one ``SessionConfig``, whose
``endpointing`` maps ``server_vad`` (or manual turns) onto ours. ``session_object`` is the
effective session as ``session.created`` / ``session.updated`` report it. What a client
gets wrong raises ``BadEvent`` (an error event; the session goes on).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..audio.codecs import AudioEncoding
from ..audio.vad import MAX_WINDOW_MS, EndpointingOptions
from ..engine.options import MAX_UPDATE_INTERVAL_MS, MIN_UPDATE_INTERVAL_MS
from ..session.settings import endpointing_with

DEFAULT_RATE = 24_000  # OpenAI's pcm16 rate
G711_RATE = 8_000
# OpenAI's audio formats -> (the codec layer's encoding, the rate it implies): the beta shape's
# input_audio_format names, the GA shape's audio.input.format.type values.
BETA_FORMATS = {"pcm16": (AudioEncoding.LINEAR16, DEFAULT_RATE), "g711_ulaw": (AudioEncoding.MULAW, G711_RATE),
                "g711_alaw": (AudioEncoding.ALAW, G711_RATE)}
GA_FORMATS = {"audio/pcm": (AudioEncoding.LINEAR16, DEFAULT_RATE), "audio/pcmu": (AudioEncoding.MULAW, G711_RATE),
              "audio/pcma": (AudioEncoding.ALAW, G711_RATE)}
WORDS_INCLUDE = "item.input_audio_transcription.words"  # our value of session.include: word times on completed
LOGPROBS_INCLUDE = "item.input_audio_transcription.logprobs"  # OpenAI's: the tokens' log-probabilities on completed
SPEAKERS_INCLUDE = "item.input_audio_transcription.speakers"  # ours: diarization (also a "-diarize" model name)


class BadEvent(Exception):
    """A client event that is refused with an error event; the session goes on."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.code, self.param = code, param


# -- the session configuration ------------------------------------------------------------------

@dataclass(frozen=True)
class ServerVad:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 600
    eager_pause_ms: int = 0  # our extension: a pause this long sends an early end of turn (0: off)


@dataclass(frozen=True)
class SessionConfig:
    """What the client configured, in OpenAI's terms (both shapes map onto this)."""

    rate: int = DEFAULT_RATE
    encoding: AudioEncoding = AudioEncoding.LINEAR16
    model: str = ""
    language: str = ""
    prompt: str = ""  # context for the model (OpenAI's prompt), as on REST
    key_terms: tuple[str, ...] = ()  # our extension transcription.key_terms: words decoding is steered toward
    vad: ServerVad | None = field(default_factory=ServerVad)  # None: manual turns (commit)
    words: bool = False
    logprobs: bool = False
    speakers: bool = False  # diarization; also asked by a transcription model named "...-diarize"
    update_interval_ms: int | None = None
    noise_reduction: object = None  # accepted and reported, not applied

    @property
    def diarize(self) -> bool:
        return self.speakers or self.model.endswith("-diarize")

    def endpointing(self, default: EndpointingOptions) -> EndpointingOptions:
        if self.vad is None:
            # Manual turns: the utterance goes on until commit (or 10 s of silence, or the
            # longest utterance); webrtcvad still finds where speech starts.
            return endpointing_with(default, stop_window_ms=MAX_WINDOW_MS, stop_threshold=1.0,
                                    pre_roll_ms=max(default.pre_roll_ms, 500))
        v = self.vad
        return endpointing_with(default, aggressiveness=min(3, max(0, int(v.threshold * 4))),
                                stop_window_ms=v.silence_duration_ms, pre_roll_ms=v.prefix_padding_ms,
                                hangover_ms=min(default.hangover_ms, v.silence_duration_ms),
                                eager_pause_ms=v.eager_pause_ms)


def as_object(value, param: str) -> dict:
    """A JSON object field (None counts as empty); BadEvent otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadEvent(f"{param} must be an object", param=param)
    return value


def _int(value, param: str, lo: int, hi: int) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or int(value) != value or not lo <= value <= hi:
        raise BadEvent(f"{param} must be an integer {lo}-{hi}, got {value!r}", param=param)
    return int(value)


def _str(value, param: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadEvent(f"{param} must be a string", param=param)
    return value


def _vad(value, current: ServerVad | None, param: str) -> ServerVad | None:
    if value is None:
        return None
    value = as_object(value, param)
    kind = value.get("type", "server_vad")
    if kind not in ("server_vad", "semantic_vad"):
        raise BadEvent(f"{param}.type {kind!r} is not supported; use server_vad, or null for manual commits",
                       param=f"{param}.type")
    base = current or ServerVad()
    threshold = value.get("threshold", base.threshold)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise BadEvent(f"{param}.threshold must be 0.0-1.0", param=f"{param}.threshold")
    return ServerVad(
        threshold=float(threshold),
        prefix_padding_ms=_int(value.get("prefix_padding_ms", base.prefix_padding_ms), f"{param}.prefix_padding_ms",
                               0, MAX_WINDOW_MS),
        silence_duration_ms=_int(value.get("silence_duration_ms", base.silence_duration_ms),
                                 f"{param}.silence_duration_ms", 30, MAX_WINDOW_MS),
        eager_pause_ms=_int(value.get("eager_pause_ms", base.eager_pause_ms), f"{param}.eager_pause_ms", 0,
                            MAX_WINDOW_MS))


def _transcription(config: SessionConfig, value, param: str) -> SessionConfig:
    if value is None:
        return config
    value = as_object(value, param)
    changes = {}
    for key, name in (("model", "model"), ("language", "language"), ("prompt", "prompt")):
        if key in value:
            changes[name] = _str(value[key], f"{param}.{key}")
    if value.get("key_terms") is not None:  # our extension: key terms that steer decoding (engine/bias.py)
        terms = value["key_terms"]
        if not isinstance(terms, list) or not all(isinstance(t, str) for t in terms):
            raise BadEvent(f"{param}.key_terms must be a list of strings", param=f"{param}.key_terms")
        changes["key_terms"] = tuple(dict.fromkeys(t.strip() for t in terms))
    if value.get("update_interval_ms") is not None:  # our extension: the interim cadence
        changes["update_interval_ms"] = _int(value["update_interval_ms"], f"{param}.update_interval_ms",
                                             MIN_UPDATE_INTERVAL_MS, MAX_UPDATE_INTERVAL_MS)
    return replace(config, **changes)


def _include(config: SessionConfig, value) -> SessionConfig:
    if value is None:
        return config
    if not isinstance(value, list):
        raise BadEvent("session.include must be a list", param="session.include")
    return replace(config, words=WORDS_INCLUDE in value, logprobs=LOGPROBS_INCLUDE in value,
                   speakers=SPEAKERS_INCLUDE in value)


def update_ga(config: SessionConfig, session: dict) -> SessionConfig:
    """Apply a GA ``session.update``'s session object."""
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise BadEvent(f"session.type {kind!r} is not served here; this server transcribes: use \"transcription\"",
                       code="unsupported_session_type", param="session.type")
    audio_in = as_object(as_object(session.get("audio"), "session.audio").get("input"), "session.audio.input")
    if "format" in audio_in:
        fmt = as_object(audio_in["format"], "session.audio.input.format")
        kind = fmt.get("type", "audio/pcm")
        if kind not in GA_FORMATS:
            raise BadEvent(f"audio format {kind!r} is not supported; send audio/pcm (16-bit little-endian mono), "
                           f"audio/pcmu (G.711 mu-law) or audio/pcma (G.711 A-law)",
                           code="unsupported_audio_format", param="session.audio.input.format.type")
        encoding, rate = GA_FORMATS[kind]
        config = replace(config, encoding=encoding, rate=rate)
        if "rate" in fmt:
            config = replace(config, rate=_int(fmt["rate"], "session.audio.input.format.rate", 8000, 48000))
    config = _transcription(config, audio_in.get("transcription"), "session.audio.input.transcription")
    if "turn_detection" in audio_in:
        config = replace(config, vad=_vad(audio_in["turn_detection"], config.vad, "session.audio.input.turn_detection"))
    if "noise_reduction" in audio_in:
        config = replace(config, noise_reduction=audio_in["noise_reduction"])
    return _include(config, session.get("include"))


def update_beta(config: SessionConfig, session: dict) -> SessionConfig:
    """Apply a beta ``transcription_session.update``'s session object."""
    if "input_audio_format" in session:
        fmt = session["input_audio_format"]
        if fmt not in BETA_FORMATS:
            raise BadEvent(f"input_audio_format {fmt!r} is not supported; send pcm16 (24 kHz 16-bit mono), "
                           f"g711_ulaw or g711_alaw (8 kHz)",
                           code="unsupported_audio_format", param="session.input_audio_format")
        encoding, rate = BETA_FORMATS[fmt]
        config = replace(config, encoding=encoding, rate=rate)
    if "input_audio_sample_rate" in session:  # our extension for the beta shape
        config = replace(config, rate=_int(session["input_audio_sample_rate"], "session.input_audio_sample_rate",
                                           8000, 48000))
    config = _transcription(config, session.get("input_audio_transcription"), "session.input_audio_transcription")
    if "turn_detection" in session:
        config = replace(config, vad=_vad(session["turn_detection"], config.vad, "session.turn_detection"))
    if "input_audio_noise_reduction" in session:
        config = replace(config, noise_reduction=session["input_audio_noise_reduction"])
    return _include(config, session.get("include"))


def _vad_object(config: SessionConfig) -> dict | None:
    v = config.vad
    if v is None:
        return None
    out = {"type": "server_vad", "threshold": v.threshold, "prefix_padding_ms": v.prefix_padding_ms,
           "silence_duration_ms": v.silence_duration_ms}
    if v.eager_pause_ms:
        out["eager_pause_ms"] = v.eager_pause_ms
    return out


def session_object(session_id: str, config: SessionConfig, model: str, beta: bool) -> dict:
    """The effective session as ``session.created`` / ``session.updated`` report it."""
    transcription = {"model": model, "language": config.language or None, "prompt": config.prompt}
    if config.key_terms:
        transcription["key_terms"] = list(config.key_terms)
    include = [name for name, on in ((WORDS_INCLUDE, config.words), (LOGPROBS_INCLUDE, config.logprobs),
                                     (SPEAKERS_INCLUDE, config.diarize)) if on]
    if beta:
        beta_format = next(name for name, (e, _) in BETA_FORMATS.items() if e is config.encoding)
        return {"id": session_id, "object": "realtime.transcription_session", "input_audio_format": beta_format,
                "input_audio_sample_rate": config.rate, "input_audio_transcription": transcription,
                "turn_detection": _vad_object(config), "input_audio_noise_reduction": config.noise_reduction,
                "include": include}
    ga_format = next(name for name, (e, _) in GA_FORMATS.items() if e is config.encoding)
    return {"id": session_id, "object": "realtime.transcription_session", "type": "transcription",
            "audio": {"input": {"format": {"type": ga_format, "rate": config.rate},
                                "transcription": transcription, "turn_detection": _vad_object(config),
                                "noise_reduction": config.noise_reduction}},
            "include": include}
