"""The server's pure parts: options, the status table, the outbox, word offsets, config conversion."""

from __future__ import annotations

import asyncio

import grpc
import pytest

pytest.importorskip("prometheus_client")
from qwen3_asr_client.proto import asr_pb2  # noqa: E402
from qwen3_asr_stream.text.alignment import WordTime  # noqa: E402
from qwen3_asr_stream.engine.text_layer import EngineFull  # noqa: E402
from qwen3_asr_stream.audio.input import InvalidAudio  # noqa: E402
from qwen3_asr_stream.session.errors import (  # noqa: E402
    OK, Code, IdleTimeout, InvalidRequest, MessageTooLarge, ServerBusy, ShuttingDown, Status, StreamTooLong, status_of,
)
from qwen3_asr_stream.protocols.grpc_stream import grpc_code  # noqa: E402
from qwen3_asr_stream.server.options import KIB, MESSAGE_OVERHEAD_BYTES, ServerOptions  # noqa: E402
from qwen3_asr_stream.session.outbox import Outbox  # noqa: E402
from qwen3_asr_stream.protocols.grpc_asr.convert import endpointing_of  # noqa: E402
from qwen3_asr_stream.session.settings import bcp47_of, language_of  # noqa: E402
from qwen3_asr_stream.session.types import words_in_stream  # noqa: E402
from qwen3_asr_stream.audio.vad import EndpointingOptions  # noqa: E402


@pytest.mark.parametrize("fields, words", [
    ({"port": 70000}, "port"),
    ({"max_streams": 0}, "max_streams"),
    ({"max_message_bytes": 100}, "max_message_bytes"),
    ({"idle_timeout_s": 0}, "idle_timeout_s"),
    ({"tls_cert": "/nonexistent/cert.pem"}, "tls_cert and tls_key"),
    ({"tls_cert": "/nonexistent/cert.pem", "tls_key": "/nonexistent/key.pem"}, "not a readable file"),
    ({"auth_token": " "}, "auth_token"),
    ({"metrics_port": 50051}, "metrics_port must differ"),
    ({"update_interval_ms": 50}, "update_interval_ms"),
    ({"max_queued_responses": 2}, "max_queued_responses"),
])
def test_options_are_checked_in_one_place(fields, words):
    with pytest.raises(ValueError, match=words):
        ServerOptions(**fields)


def test_receive_limit_covers_the_largest_message():
    options = ServerOptions(max_message_bytes=64 * KIB, max_recognize_bytes=256 * KIB)
    assert options.receive_limit_bytes == 256 * KIB + MESSAGE_OVERHEAD_BYTES


@pytest.mark.parametrize("exc, code", [
    (InvalidRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidAudio("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (MessageTooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ServerBusy("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (EngineFull("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (StreamTooLong("x"), grpc.StatusCode.OUT_OF_RANGE),
    (IdleTimeout("x"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (ShuttingDown("x"), grpc.StatusCode.UNAVAILABLE),
    (RuntimeError("secret detail"), grpc.StatusCode.INTERNAL),
])
def test_status_table(exc, code):
    status = status_of(exc)
    assert grpc_code(status.code) == code
    assert ("secret" not in status.message) if code == grpc.StatusCode.INTERNAL else status.message == "x"


def test_outbox_order_coalescing_and_end():
    async def run():
        box = Outbox(max_items=8)
        box.put("start 0")
        box.put_interim(0, "interim a")
        box.put_interim(0, "interim b")  # replaces the unread one
        box.put("end 0")
        final = box.reserve()
        box.put("start 1")
        box.put_interim(1, "interim c")
        box.end(OK)
        box.put("ignored: the end is decided")
        taken = [await box.next(), await box.next(), await box.next()]
        waiting = asyncio.ensure_future(box.next())  # the final is not ready: nothing after it goes
        for _ in range(10):  # let the loop run the waiter a few times (no wall clock: nothing else can wake it)
            await asyncio.sleep(0)
        assert not waiting.done()
        box.fill(final, "final 0")
        taken += [await waiting, await box.next(), await box.next(), await box.next()]
        return box, taken

    box, taken = asyncio.run(run())
    assert taken == ["start 0", "interim b", "end 0", "final 0", "start 1", "interim c", OK]
    assert box.coalesced == 1


def test_outbox_abort_drops_everything_and_room_is_bounded():
    async def run():
        box = Outbox(max_items=8)
        for i in range(8):
            box.put(i)
        assert not await box.wait_room(0.05)
        await box.next()
        assert await box.wait_room(0.05)
        box.abort(Status(Code.DEADLINE_EXCEEDED, "gone"))
        return len(box), await box.next()

    assert asyncio.run(run()) == (0, Status(Code.DEADLINE_EXCEEDED, "gone"))


def test_words_are_clamped_to_the_utterance_and_ordered():
    words = [WordTime("a", 0.1, 0.3), WordTime("b", 0.2, 0.25), WordTime("c", 5.0, 9.0)]
    out = words_in_stream(words, start_sample=16_000, end_sample=16_000 + 2 * 16_000)  # 1000-3000 ms
    assert [(w.word, w.start_ms, w.end_ms) for w in out] == [("a", 1100, 1300), ("b", 1200, 1250),
                                                             ("c", 3000, 3000)]


def test_language_names_and_codes():
    assert language_of("") is None
    assert language_of("english") == language_of("en") == language_of("en-US") == "English"
    assert language_of("yue") == "Cantonese"
    assert bcp47_of("English") == "en-US" and language_of(bcp47_of("Cantonese")) == "Cantonese"
    with pytest.raises(InvalidRequest, match="unknown language 'xx'"):
        language_of("xx")


def test_endpointing_zero_fields_take_the_defaults():
    default = EndpointingOptions()
    assert endpointing_of(asr_pb2.EndpointingConfig(), default) == default
    config = asr_pb2.EndpointingConfig(vad_aggressiveness=0, pre_roll_ms=0, stop_history_ms=900)
    got = endpointing_of(config, default)
    assert (got.aggressiveness, got.pre_roll_ms, got.stop_window_ms, got.frame_ms) == (0, 0, 900, default.frame_ms)
    with pytest.raises(InvalidRequest, match="frame_ms"):
        endpointing_of(asr_pb2.EndpointingConfig(frame_ms=15), default)


def test_stage_conflicts_are_found_at_start():
    from qwen3_asr_stream.engine.aligner import MAX_ALIGN_SECONDS
    from qwen3_asr_stream.server.options import stage_conflicts

    long = ServerOptions(endpointing=EndpointingOptions(max_utterance_ms=200_000))
    assert stage_conflicts(long, {"m": 600.0}, None) == []
    (aligner_problem,) = stage_conflicts(long, {"m": 600.0}, MAX_ALIGN_SECONDS)
    assert "aligner can time (180000 ms)" in aligner_problem and "word times" in aligner_problem
    (engine_problem,) = stage_conflicts(long, {"m": 60.0}, None)
    assert "engine of m holds (60000 ms)" in engine_problem
    assert stage_conflicts(ServerOptions(), {"m": 60.0}, MAX_ALIGN_SECONDS) == []
