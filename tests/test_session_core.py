"""The session core's lifecycle: every way a call ends, with its status.

Each test drives ``Session`` / ``Calls`` directly (no protocol) with synthesized
speech and checks the states it passes, the results it delivers before its end,
and the status it ends with. The engine is ``FakeEngine`` (the engine's interface on a
script, no model; ``test_fake_engine.py`` holds it to the real engine's contract), so
these tests are about the session alone; the last ones run the same calls on the
real tiny engine.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from conftest import compose, wait_until_async

pytest.importorskip("webrtcvad")
from qwen3_asr_stream.audio.input import AudioFormat  # noqa: E402
from qwen3_asr_stream.audio.vad import EndReason  # noqa: E402
from qwen3_asr_stream.session.metrics import Metrics  # noqa: E402
from qwen3_asr_stream.session.calls import Calls, Control  # noqa: E402
from qwen3_asr_stream.session.core import Session, State  # noqa: E402
from qwen3_asr_stream.session.limits import SessionLimits  # noqa: E402
from qwen3_asr_stream.engine.options import EngineOptions  # noqa: E402
from qwen3_asr_stream.session.errors import Code, ServerBusy, ShuttingDown, Status  # noqa: E402
from qwen3_asr_stream.session.settings import settings_from  # noqa: E402
from qwen3_asr_stream.session.types import Backend, SpeechEvent, Transcript  # noqa: E402
from qwen3_asr_stream.testing.fake_engine import FakeEngine  # noqa: E402

CHUNK_MS = 100


@pytest.fixture(scope="module")
def speech(phrases):
    a, _, rate = phrases
    return compose([a], rate, tail_s=1.0)


@pytest.fixture(params=["fake", "real"])
def either_engine(request):
    """The fake engine, then the real tiny one: the tests that take it run on both."""
    return request.getfixturevalue("fake_engine" if request.param == "fake" else "engine")


def break_updates(engine, monkeypatch) -> None:
    """Make every later update of ``engine`` fail (the fake's injection, or a broken model runner)."""
    if isinstance(engine, FakeEngine):
        engine.fail_updates("model exploded")
        return

    def broken(batch):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(engine.runner, "update", broken)


def backend_of(engine, **limits) -> Backend:
    return Backend(SessionLimits(**limits), {"tiny": engine}, None, Metrics())


def calls_of(engine, **limits) -> Calls:
    return Calls(backend_of(engine, **limits))


def settings(backend: Backend, rate: int):
    return settings_from(backend, sample_rate=rate)


async def drain_results(session: Session) -> tuple[list, Status]:
    items = []
    while not isinstance(item := await session.next(), Status):
        items.append(item)
    return items, item


def finals(items) -> list[Transcript]:
    return [i for i in items if isinstance(i, Transcript) and i.is_final]


def speech_end_ms(speech) -> int:
    return speech.spans[0][1]


def into_first_utterance(speech) -> int:
    """Chunks from the start to 0.8 s into the first utterance."""
    return speech.spans[0][0] // CHUNK_MS + 8


def test_half_close_delivers_the_last_final_then_ok(either_engine, speech):
    async def run():
        backend = backend_of(either_engine)
        session = Session(settings(backend, speech.rate), backend)
        states = [session.state]
        for chunk in speech.chunks(CHUNK_MS):
            session.audio(chunk)
        session.end_input()
        states.append(session.state)
        items, status = await drain_results(session)
        states.append(session.state)
        return items, status, states

    items, status, states = asyncio.run(run())
    assert states == [State.OPEN, State.CLOSING, State.ENDED]
    assert status.code is Code.OK
    (final,) = finals(items)
    assert final.text and final.end_reason is EndReason.SILENCE
    assert [type(i) for i in items] == [SpeechEvent, SpeechEvent, Transcript]


def test_finalize_then_half_close(fake_engine, speech):
    """FINALIZE ends the utterance in progress at once (FORCED); the half-close then ends the call OK."""
    async def run():
        backend = backend_of(fake_engine)
        session = Session(settings(backend, speech.rate), backend)
        chunks = speech.chunks(CHUNK_MS)
        onset = speech.spans[0][0] // CHUNK_MS
        for chunk in chunks[:onset + 8]:  # 800 ms into the phrase
            session.audio(chunk)
        assert session.in_speech, "precondition: the phrase has started"
        session.finalize()
        assert session.state is State.OPEN and not session.in_speech
        session.end_input()
        return await drain_results(session)

    items, status = asyncio.run(run())
    assert status.code is Code.OK
    (final,) = finals(items)
    assert final.end_reason is EndReason.FORCED


def test_cancel_releases_the_engine(either_engine, speech):
    engine = either_engine

    async def run():
        backend = backend_of(engine)
        session = Session(settings(backend, speech.rate), backend)
        chunks = speech.chunks(CHUNK_MS)
        for chunk in chunks[:into_first_utterance(speech)]:
            session.audio(chunk)
        assert engine.stats().open_utterances == 1, "precondition: an utterance is open in the engine"
        session.close()
        return session, await session.next()

    session, status = asyncio.run(run())
    assert session.state is State.ENDED and status.code is Code.CANCELLED
    assert engine.stats().open_utterances == 0
    session.audio(b"\0" * 3200)  # input after the end is ignored, not an error
    assert session.end_status.code is Code.CANCELLED


def test_duration_limit_ends_with_out_of_range_after_the_utterance(fake_engine, speech):
    async def run():
        backend = backend_of(fake_engine)
        limit_ms = speech.spans[0][0] + 800
        session = Session(settings(backend, speech.rate), backend, max_stream_ms=limit_ms)
        for chunk in speech.chunks(CHUNK_MS):
            session.audio(chunk)
        return session, await drain_results(session), limit_ms

    session, (items, status), limit_ms = asyncio.run(run())
    assert status.code is Code.OUT_OF_RANGE and "maximum" in status.message
    (final,) = finals(items)  # the utterance cut by the limit still gets its final
    assert final.end_ms <= limit_ms and final.end_reason is EndReason.END_OF_STREAM
    assert session.received_ms <= limit_ms


def test_idle_input_ends_with_deadline_exceeded_after_the_final(fake_engine, speech):
    async def run():
        calls = calls_of(fake_engine, idle_timeout_s=0.6)
        backend = calls.backend
        with calls.stream("test", "peer") as call:
            session = call.open(settings(backend, speech.rate))
            for chunk in speech.chunks(CHUNK_MS)[:into_first_utterance(speech)]:
                session.audio(chunk)
            started = time.monotonic()
            items, status = await drain_results(session)  # the client sends nothing more
            call.end(status)
            return items, status, time.monotonic() - started, calls

    items, status, waited, calls = asyncio.run(run())
    assert status.code is Code.DEADLINE_EXCEEDED and "no audio" in status.message
    assert 0.5 < waited < 5
    assert len(finals(items)) == 1
    assert calls.active == 0


def test_engine_failure_ends_with_internal_and_no_final(either_engine, speech, monkeypatch):
    break_updates(either_engine, monkeypatch)

    async def run():
        backend = backend_of(either_engine)
        session = Session(settings(backend, speech.rate), backend)
        for chunk in speech.chunks(CHUNK_MS):
            session.audio(chunk)
        session.end_input()
        return await drain_results(session)

    items, status = asyncio.run(run())
    assert status.code is Code.INTERNAL and "exploded" not in status.message
    assert not finals(items)


def test_audio_ending_inside_a_sample_gets_its_final_then_invalid_argument(fake_engine, speech):
    async def run():
        backend = backend_of(fake_engine)
        session = Session(settings(backend, speech.rate), backend)
        for chunk in speech.chunks(CHUNK_MS)[:into_first_utterance(speech)]:
            session.audio(chunk)
        session.audio(b"\x01")  # half a sample
        session.end_input()
        return await drain_results(session)

    items, status = asyncio.run(run())
    assert status.code is Code.INVALID_ARGUMENT and "whole frame" in status.message
    (final,) = finals(items)
    assert final.end_reason is EndReason.END_OF_STREAM


def test_clear_drops_the_utterance_in_progress(fake_engine, speech):
    async def run():
        backend = backend_of(fake_engine)
        session = Session(settings(backend, speech.rate), backend)
        chunks = speech.chunks(CHUNK_MS)
        for chunk in chunks[:into_first_utterance(speech)]:
            session.audio(chunk)
        assert session.in_speech
        session.clear()
        assert not session.in_speech and fake_engine.stats().open_utterances == 0
        for chunk in chunks:  # the whole phrase again, from the start
            session.audio(chunk)
        session.end_input()
        return await drain_results(session)

    items, status = asyncio.run(run())
    assert status.code is Code.OK
    (final,) = finals(items)
    assert final.utterance_index == 1  # the cleared utterance 0 never gets a final


def test_drain_lets_the_utterance_finish_then_unavailable(fake_engine, speech):
    async def run():
        calls = calls_of(fake_engine)
        backend = calls.backend
        with calls.stream("test", "peer") as call:
            session = call.open(settings(backend, speech.rate))
            chunks = speech.chunks(CHUNK_MS)
            middle = into_first_utterance(speech)
            for chunk in chunks[:middle]:
                session.audio(chunk)
            drain = asyncio.ensure_future(calls.drain(20))
            await wait_until_async(lambda: session.state is State.DRAINING, what="the session draining")
            with pytest.raises(ShuttingDown):
                calls.stream("test", "peer")
            for chunk in chunks[middle:]:  # the rest of the phrase, then silence
                session.audio(chunk)
            items, status = await drain_results(session)
            call.end(status)
        started = time.monotonic()
        await drain
        return items, status, time.monotonic() - started

    items, status, waited = asyncio.run(run())
    assert status.code is Code.UNAVAILABLE and "shutting down" in status.message
    (final,) = finals(items)
    assert final.end_reason is EndReason.SILENCE  # it ended on its own, not cut
    assert waited < 1


def test_drain_forces_the_end_at_half_the_grace(fake_engine, speech):
    """A stream that never stops speaking is ended at half the grace with the final of what it said."""
    async def run():
        calls = calls_of(fake_engine)
        backend = calls.backend
        grace = 3.0
        with calls.stream("test", "peer") as call:
            session = call.open(settings(backend, speech.rate))
            phrase = speech.pcm[speech.spans[0][0] * speech.rate // 1000:]
            loud = np.tile(phrase[: len(phrase) // 2], 8)  # speech with no pause, for longer than the grace
            chunks = speech.chunks(CHUNK_MS, loud)

            async def speak():
                for chunk in chunks:
                    session.audio(chunk)
                    await asyncio.sleep(CHUNK_MS / 1000)

            speaker = asyncio.ensure_future(speak())
            await wait_until_async(lambda: session.in_speech, what="speech detected")
            started = time.monotonic()
            drain = asyncio.ensure_future(calls.drain(grace))
            items, status = await drain_results(session)
            call.end(status)
            ended = time.monotonic() - started
            speaker.cancel()
        await drain
        return items, status, ended, grace

    items, status, ended, grace = asyncio.run(run())
    assert status.code is Code.UNAVAILABLE
    assert grace / 2 - 0.2 < ended < grace, ended
    assert len(finals(items)) >= 1 and finals(items)[-1].end_reason is EndReason.END_OF_STREAM


def test_admission_counts_streams_and_unary_calls_together(fake_engine):
    async def run():
        calls = calls_of(fake_engine, max_streams=2)
        with calls.stream("test", "a"):
            with calls.unary("test", "b"):
                with pytest.raises(ServerBusy):
                    calls.stream("test", "c")
            assert calls.active == 1
        assert calls.active == 0

    asyncio.run(run())


def test_pump_feeds_audio_and_controls_until_half_close(fake_engine, speech):
    async def run():
        calls = calls_of(fake_engine)
        backend = calls.backend
        with calls.stream("test", "peer") as call:
            session = call.open(settings(backend, speech.rate))
            chunks = speech.chunks(CHUNK_MS)
            middle = into_first_utterance(speech)

            async def inputs():
                for chunk in chunks[:middle]:
                    yield chunk
                yield Control.FINALIZE

            reader = asyncio.ensure_future(call.pump(inputs()))
            items, status = await drain_results(session)
            await reader
            call.end(status)
            return items, status

    items, status = asyncio.run(run())
    assert status.code is Code.OK
    assert [f.end_reason for f in finals(items)] == [EndReason.FORCED]


def test_settings_accept_every_protocol_spelling(fake_engine):
    backend = backend_of(fake_engine)
    for language in ("English", "en", "en-US", "EN_us"):
        assert settings_from(backend, sample_rate=24000, language=language).language == "English"
    s = settings_from(backend, sample_rate=24000)
    assert s.audio == AudioFormat(sample_rate=24000) and s.language is None and s.model == "tiny"


def test_a_stream_faster_than_real_time_is_paced_at_the_lead_bound(fake_engine):
    """4 s of audio sent at once: read at most max_lead_s ahead of real time (1 s here)."""
    chunk = b"\0" * 3200  # 100 ms of 16 kHz 16-bit silence

    async def run(max_lead_s: float) -> tuple[float, float]:
        calls = calls_of(fake_engine, max_lead_s=max_lead_s)
        backend = calls.backend
        with calls.stream("test", "peer") as call:
            session = call.open(settings(backend, 16000))
            leads = []

            async def inputs():
                for _ in range(40):
                    leads.append(session.lead_s())
                    yield chunk

            started = time.monotonic()
            reader = asyncio.ensure_future(call.pump(inputs()))
            items, status = await drain_results(session)
            await reader
            call.end(status)
            assert status.code is Code.OK
            return time.monotonic() - started, max(leads)

    paced, lead = asyncio.run(run(1.0))
    assert paced > 2.5 and lead < 1.0 + 0.1 + 0.2, (paced, lead)  # one message and scheduling beyond the bound
    unpaced, _ = asyncio.run(run(60.0))
    assert unpaced < 1.5, unpaced


def test_interims_come_on_the_cadence_then_the_final(fake_engine, speech):
    """Interims of an utterance (asked for, every 300 ms of audio) come between its start and its
    end, covering more audio each, with stable text that only grows; then its one final."""
    async def run():
        backend = backend_of(fake_engine)
        session = Session(settings_from(backend, sample_rate=speech.rate, interim_results=True,
                                        update_interval_ms=300), backend)
        for chunk in speech.chunks(CHUNK_MS):
            session.audio(chunk)
            await asyncio.sleep(0)  # let results in between chunks, as a paced client's do
        session.end_input()
        return await drain_results(session)

    items, status = asyncio.run(run())
    assert status.code is Code.OK
    kinds = ["final" if isinstance(i, Transcript) and i.is_final else "interim" if isinstance(i, Transcript)
             else i.type for i in items]
    assert kinds[0] == "start" and kinds[-2:] == ["end", "final"], kinds
    assert set(kinds[1:-2]) == {"interim"}, kinds
    interims = [i for i in items if isinstance(i, Transcript) and not i.is_final]
    assert interims, "no interims"
    assert [i.end_ms for i in interims] == sorted(i.end_ms for i in interims)
    for before, after in zip(interims, interims[1:]):
        assert after.stable_text.startswith(before.stable_text)
    for interim in interims:
        assert interim.text.startswith(interim.stable_text)
    (final,) = finals(items)
    assert final.text and final.text.startswith(interims[-1].text)  # the fake's final: the words of all the audio
    assert final.end_ms >= interims[-1].end_ms


def test_a_full_engine_ends_the_new_call_with_resource_exhausted(speech):
    """The engine takes one utterance: a second call's utterance is refused, the first call goes on."""
    with FakeEngine(EngineOptions(max_utterances=1)) as engine:
        async def run():
            backend = backend_of(engine)
            first, second = (Session(settings(backend, speech.rate), backend) for _ in range(2))
            chunks = speech.chunks(CHUNK_MS)
            for chunk in chunks[:into_first_utterance(speech)]:
                first.audio(chunk)
            for chunk in chunks:
                second.audio(chunk)
            for chunk in chunks[into_first_utterance(speech):]:
                first.audio(chunk)
            first.end_input()
            return await drain_results(first), await drain_results(second)

        (items, status), (_, refused) = asyncio.run(run())
    assert refused.code is Code.RESOURCE_EXHAUSTED and "utterances" in refused.message
    assert status.code is Code.OK and len(finals(items)) == 1


def test_a_stopped_engine_ends_the_call_with_unavailable(fake_engine, speech):
    fake_engine.close()

    async def run():
        backend = backend_of(fake_engine)
        session = Session(settings(backend, speech.rate), backend)
        for chunk in speech.chunks(CHUNK_MS):
            session.audio(chunk)
        return await drain_results(session)

    items, status = asyncio.run(run())
    assert status.code is Code.UNAVAILABLE and not finals(items)


def test_a_call_without_a_session_is_watched_from_admission():
    """Before its session opens, a call that hears nothing for the idle timeout ends with
    DEADLINE_EXCEEDED, and a drain ends one at once with UNAVAILABLE; both release the admission
    and wake the adapter waiting in ``before_session``."""
    async def run():
        calls = calls_of(None, idle_timeout_s=1.0, max_streams=2)
        never = asyncio.get_running_loop().create_future()  # a client that sends nothing
        with calls.stream("test", "idle") as idle_call:
            started = time.monotonic()
            message = await asyncio.wait_for(idle_call.before_session(never), 10)
            idle = (message, idle_call.status, time.monotonic() - started, calls.active)
        assert never.cancelled()
        with calls.stream("test", "heard") as heard_call:
            heard = await heard_call.before_session(asyncio.sleep(0.6, "config"))
            await asyncio.sleep(0.5)  # 1.1 s since admission, 0.5 s since the last message
            heard = (heard, heard_call.ended)
            waiting = asyncio.ensure_future(heard_call.before_session(asyncio.get_running_loop().create_future()))
            await asyncio.sleep(0.05)
            drain = asyncio.ensure_future(calls.drain(20))
            message = await asyncio.wait_for(waiting, 10)
            drained = (message, heard_call.status, calls.active)
        await asyncio.wait_for(drain, 10)
        return idle, heard, drained

    idle, heard, drained = asyncio.run(run())
    message, status, waited, active = idle
    assert message is None and status.code is Code.DEADLINE_EXCEEDED and "no audio" in status.message
    assert 0.9 < waited < 10 and active == 0
    assert heard == ("config", False)  # a message resets the idle time
    message, status, active = drained
    assert message is None and status.code is Code.UNAVAILABLE and active == 0
