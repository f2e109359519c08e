"""The OpenAI adapters' conversions on their own: session shapes -> settings, interims -> deltas,
subtitle formats, the error table, tokens. No server; real domain objects."""

from __future__ import annotations

import pytest

from qwen3_asr_stream.audio.vad import EndpointingOptions, EndReason
from qwen3_asr_stream.protocols.openai_common import ERRORS, model_for, token_ok
from qwen3_asr_stream.protocols.openai_realtime import Connection
from qwen3_asr_stream.protocols.openai_realtime_config import (BadEvent, ServerVad, SessionConfig, update_beta,
                                                               update_ga)
from qwen3_asr_stream.protocols.openai_rest import srt, timestamp, vtt
from qwen3_asr_stream.session.errors import Code
from qwen3_asr_stream.session.types import SpeechEvent, Transcript, Word


def test_ga_and_beta_session_shapes_map_to_one_config():
    ga = update_ga(SessionConfig(), {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000},
        "transcription": {"model": "gpt-4o-transcribe", "language": "de", "prompt": "names"},
        "turn_detection": {"type": "server_vad", "threshold": 0.8, "silence_duration_ms": 400,
                           "prefix_padding_ms": 200}}}, "include": ["item.input_audio_transcription.words"]})
    assert (ga.rate, ga.model, ga.language, ga.prompt, ga.words) == (16000, "gpt-4o-transcribe", "de", "names", True)
    assert ga.vad == ServerVad(0.8, 200, 400)
    beta = update_beta(SessionConfig(), {"input_audio_format": "pcm16", "turn_detection": None,
                                         "input_audio_transcription": {"language": "en"}})
    assert (beta.rate, beta.vad, beta.language) == (24000, None, "en")
    # Fields left out keep their values.
    assert update_ga(ga, {"type": "transcription"}) == ga


def test_server_vad_and_manual_turns_map_onto_endpointing():
    default = EndpointingOptions()
    same = SessionConfig(vad=ServerVad(0.5, default.pre_roll_ms, default.stop_window_ms)).endpointing(default)
    assert same == default  # OpenAI's defaults land on ours
    e = SessionConfig(vad=ServerVad(1.0, 100, 200)).endpointing(default)
    assert (e.aggressiveness, e.pre_roll_ms, e.stop_window_ms, e.hangover_ms) == (3, 100, 200, 200)
    manual = SessionConfig(vad=None).endpointing(default)
    assert manual.stop_window_ms == 10_000 and manual.stop_threshold == 1.0


@pytest.mark.parametrize("session, code", [
    ({"type": "realtime"}, "unsupported_session_type"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/opus"}}}}, "unsupported_audio_format"),
    ({"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 4000}}}}, "invalid_value"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"type": "magic"}}}}, "invalid_value"),
    ({"type": "transcription", "audio": {"input": {"turn_detection": {"threshold": 2}}}}, "invalid_value"),
    ({"type": "transcription", "audio": "pcm"}, "invalid_value"),
])
def test_bad_sessions_are_refused(session, code):
    with pytest.raises(BadEvent) as refused:
        update_ga(SessionConfig(), session)
    assert refused.value.code == code and str(refused.value)


def interim(text: str, stable: str, index: int = 0) -> Transcript:
    return Transcript(utterance_index=index, is_final=False, text=text, stable_text=stable, language="English",
                      start_ms=100, end_ms=900, processed_ms=900, latency_ms=5)


def final(text: str, index: int = 0) -> Transcript:
    return Transcript(utterance_index=index, is_final=True, text=text, stable_text=text, language="English",
                      start_ms=100, end_ms=1500, processed_ms=2000, latency_ms=40, end_reason=EndReason.SILENCE,
                      words=(Word("hello", 120, 400), Word("world", 450, 900)))


class _Events(Connection):
    """The connection's conversion alone (no socket, no call)."""

    def __init__(self, vad: bool = True) -> None:
        self.config = SessionConfig(vad=ServerVad() if vad else None)
        self.items, self.previous_item_id, self._item_prefix = {}, None, "item_t"


def run(connection: _Events, results) -> list[dict]:
    return [e for r in results for e in connection.events_of(r)]


def test_deltas_carry_stable_growth_and_concatenate_to_the_final():
    events = run(_Events(), [SpeechEvent("start", 100, 0), interim("hel", ""), interim("hello wor", "hello"),
                             interim("hello world", "hello"), SpeechEvent("end", 1200, 0, EndReason.SILENCE),
                             final("hello world")])
    types = [e["type"].rsplit(".", 1)[-1] for e in events]
    assert types == ["speech_started", "delta", "delta", "delta", "speech_stopped", "committed", "delta", "completed"]
    deltas = [e["delta"] for e in events if e["type"].endswith("delta")]
    assert deltas == ["", "hello", "", " world"]
    assert "".join(deltas) == events[-1]["transcript"] and events[-1]["revised"] is False
    assert events[1]["text"] == "hel" and events[2]["unstable_text"] == " wor"
    assert events[-1]["words"] == [{"word": "hello", "start": 0.12, "end": 0.4},
                                   {"word": "world", "start": 0.45, "end": 0.9}]
    assert len({e["item_id"] for e in events}) == 1


def test_a_final_that_revises_the_deltas_says_so():
    events = run(_Events(), [SpeechEvent("start", 0, 0), interim("hallo wor", "hallo"),
                             SpeechEvent("end", 900, 0, EndReason.FORCED), final("hello world")])
    assert [e["delta"] for e in events if "delta" in e] == ["hallo"]  # no delta can fix "hallo"
    assert events[-1]["transcript"] == "hello world" and events[-1]["revised"] is True


def test_manual_turns_send_no_vad_events_and_chain_items():
    c = _Events(vad=False)
    events = run(c, [SpeechEvent("start", 0, 0), SpeechEvent("end", 900, 0, EndReason.FORCED), final("a", 0),
                     SpeechEvent("start", 1000, 1), SpeechEvent("end", 1900, 1, EndReason.FORCED), final("b", 1)])
    types = [e["type"].rsplit(".", 1)[-1] for e in events]
    assert types == ["committed", "delta", "completed"] * 2
    committed = [e for e in events if e["type"].endswith("committed")]
    assert committed[1]["previous_item_id"] == committed[0]["item_id"] != committed[1]["item_id"]


def test_subtitles():
    results = [final("hello world", 0), Transcript(1, True, "  ", "", "", 2000, 2500, 3000, 1),
               Transcript(2, True, "again", "again", "", 3_723_004, 3_724_500, 3_724_600, 1)]
    assert timestamp(3_723_004, ",") == "01:02:03,004"
    assert srt(results) == ("1\n00:00:00,100 --> 00:00:01,500\nhello world\n\n"
                            "2\n01:02:03,004 --> 01:02:04,500\nagain\n\n")
    assert vtt(results).startswith("WEBVTT\n\n00:00:00.100 --> 00:00:01.500\nhello world\n\n")


def test_error_table_covers_every_core_code_and_tokens():
    assert {code.name for code in Code} - {"OK"} <= set(ERRORS)
    assert ERRORS["RESOURCE_EXHAUSTED"].http_status == 429 and ERRORS["UNAVAILABLE"].http_status == 503
    assert token_ok(None, {})
    assert token_ok("t", {"Authorization": "Bearer t"})
    assert token_ok("t", {"Sec-WebSocket-Protocol": "realtime, openai-insecure-api-key.t"})
    assert not token_ok("t", {"Authorization": "Bearer u"}) and not token_ok("t", {})
    assert model_for("whisper-1", ["a", "b"], "a") == "a" and model_for("b", ["a", "b"], "a") == "b"
    assert model_for("nope", ["a"], "a") is None
