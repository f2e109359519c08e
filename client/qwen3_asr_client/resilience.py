"""Streams that survive refusals and dropped connections (asyncio).

    async with AsyncStreamingClient("asr.example:50051") as client:
        stream = ResumableStream(client, AudioFormat(16000), RecognitionOptions(language="English"))
        async for item in stream.run(microphone_chunks()):
            ...   # Result / SpeechEvent, offsets in the time of the whole recording

A stream that is **refused at the start** (UNAVAILABLE: no replica or a draining one;
RESOURCE_EXHAUSTED: the server is full) is tried again with exponential back-off
and jitter (``RetryPolicy``); nothing has been recognized yet, so nothing is lost.

A stream that **drops** after results have come (UNAVAILABLE: the replica drains and
ends the stream after its utterance, or its connection broke; CANCELLED that the
caller did not ask for: a proxy reset the stream; INTERNAL: a proxy lost its
upstream) is **resumed**: a new call is opened (through the same target, so a proxy
or balancer picks a live replica) and the audio after the last *acknowledged*
point is sent again, then the live audio continues.

What is acknowledged: the audio up to the end of the last final result
(``Result.end_ms``). Everything before it has its final, and that audio is never
sent again, so **a final is never duplicated**. Everything after it is kept (up to
``max_replay_s``) and replayed on the new call, so **nothing is lost** when the
unacknowledged audio fits in the buffer: the utterance that was in progress is
recognized again from its start on the new replica and gets its one final there.
Only when more than ``max_replay_s`` of audio is unacknowledged (a very long
utterance, or long silence, at the moment of the drop) is the oldest part of it
dropped; then the loss is at most the utterance in progress, and ``lost_ms`` says
how much audio was skipped.

Repeated items: interim results and the SPEECH_START event of the utterance in
progress may come again after a resume (same ``utterance_index``); finals never.

Offsets: results, words and speech events are shifted onto the time of the whole
recording (the first call's time), and utterance indexes continue from the last
final, so the caller sees one stream. Only audio bytes are supported as input
(no FINALIZE markers: a resume could not place them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from dataclasses import dataclass
from typing import AsyncIterable, AsyncIterator, Iterable

import grpc
import grpc.aio

from .api import AsyncStreamingClient, RecognitionOptions
from .proto import asr_pb2
from .results import AudioFormat, Result, SpeechEvent, StreamItem, items_of

log = logging.getLogger(__name__)

REFUSED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
DROPPED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL})
SEND_CHUNK_MS = 100  # replayed audio goes out in messages of this length


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a stream is started again."""

    attempts: int = 6  # starts of one call, the first included
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2  # each wait is scaled by a random factor in [1 - jitter, 1 + jitter]
    refused_codes: frozenset = REFUSED_CODES  # a call that ends so before any response is tried again
    max_resumes: int = 10  # reconnects after drops, over the whole stream

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_resumes < 0:
            raise ValueError("attempts must be at least 1 and max_resumes at least 0")
        if not (0 < self.initial_backoff_s <= self.max_backoff_s) or self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError("need 0 < initial_backoff_s <= max_backoff_s, multiplier >= 1, 0 <= jitter < 1")

    def backoff_s(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        return base * (rng or _rng).uniform(1 - self.jitter, 1 + self.jitter)


_rng = random.Random()


class ResumableStream:
    """One logical stream over as many StreamingRecognize calls as it takes (see the module doc)."""

    def __init__(self, client: AsyncStreamingClient, audio_format: AudioFormat,
                 options: RecognitionOptions = RecognitionOptions(), *, policy: RetryPolicy = RetryPolicy(),
                 resume: bool = True, max_replay_s: float = 60.0,
                 dropped_codes: frozenset = DROPPED_CODES) -> None:
        if max_replay_s <= 0:
            raise ValueError("max_replay_s must be positive")
        if not audio_format.raw:
            raise ValueError(f"a resumable stream replays raw samples from a time offset; {audio_format.encoding} "
                             f"cannot be resumed mid-stream: use LINEAR16, FLOAT32, MULAW or ALAW")
        self.client, self.format, self.options, self.policy = client, audio_format, options, policy
        self.resume, self.dropped_codes = resume, dropped_codes
        self._max_replay_bytes = int(max_replay_s * audio_format.sample_rate) * audio_format.frame_bytes
        self._buffer = bytearray()  # audio from self._buffer_start (absolute byte) to what the source gave
        self._buffer_start = 0
        self._source_done = False
        self._more = asyncio.Event()
        self.calls = 0  # StreamingRecognize calls made
        self.resumes = 0  # of them, after a drop
        self.refusals = 0  # starts refused and retried
        self.lost_ms = 0  # unacknowledged audio skipped (over max_replay_s)
        self.acked_ms = 0  # end of the last final, in the time of the whole recording
        self._next_utterance = 0

    # -- audio ------------------------------------------------------------------------------------

    def _ms_to_bytes(self, ms: int) -> int:
        return (ms * self.format.sample_rate // 1000) * self.format.frame_bytes

    def _bytes_to_ms(self, n: int) -> int:
        return n // self.format.frame_bytes * 1000 // self.format.sample_rate

    def _acknowledge(self, ms: int) -> None:
        """Audio before ``ms`` has its finals: forget it."""
        self.acked_ms = max(self.acked_ms, ms)
        drop = self._ms_to_bytes(self.acked_ms) - self._buffer_start
        if drop > 0:
            del self._buffer[:drop]
            self._buffer_start += drop

    def _skip_to(self, absolute_byte: int) -> None:
        skipped = absolute_byte - self._buffer_start
        if skipped > 0:
            self.lost_ms += self._bytes_to_ms(skipped)
            del self._buffer[:skipped]
            self._buffer_start = absolute_byte

    async def _read_source(self, audio: AsyncIterable[bytes] | Iterable[bytes]) -> None:
        try:
            if isinstance(audio, AsyncIterable):
                async for chunk in audio:
                    self._add(chunk)
            else:
                for chunk in audio:
                    self._add(chunk)
                    await asyncio.sleep(0)
        finally:
            self._source_done = True
            self._more.set()

    def _add(self, chunk) -> None:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            raise TypeError(f"ResumableStream takes audio bytes, not {type(chunk).__name__}")
        self._buffer += chunk
        over = len(self._buffer) - self._max_replay_bytes
        if over > 0:  # keep at most max_replay_s of unacknowledged audio
            over += -over % self.format.frame_bytes
            self._skip_to(self._buffer_start + over)
        self._more.set()

    async def _requests(self, position: list[int]):
        """The configuration, then the audio from ``position[0]`` (absolute byte) as it comes."""
        yield self.options.streaming_request(self.format)
        step = max(self.format.frame_bytes, self.format.chunk_bytes(SEND_CHUNK_MS))
        while True:
            start = max(position[0], self._buffer_start) - self._buffer_start
            if start < len(self._buffer):
                piece = bytes(self._buffer[start:start + step])
                position[0] = self._buffer_start + start + len(piece)
                yield asr_pb2.StreamingRecognizeRequest(audio_content=piece)
                continue
            if self._source_done:
                return
            self._more.clear()
            await self._more.wait()

    # -- results ----------------------------------------------------------------------------------

    def _shift(self, item: StreamItem, base_ms: int, base_utterance: int) -> StreamItem:
        if isinstance(item, SpeechEvent):
            return dataclasses.replace(item, offset_ms=item.offset_ms + base_ms,
                                       utterance_index=item.utterance_index + base_utterance)
        words = tuple(dataclasses.replace(w, start_ms=w.start_ms + base_ms, end_ms=w.end_ms + base_ms)
                      for w in item.words)
        return dataclasses.replace(item, start_ms=item.start_ms + base_ms, end_ms=item.end_ms + base_ms,
                                   audio_processed_ms=item.audio_processed_ms + base_ms, words=words,
                                   utterance_index=item.utterance_index + base_utterance)

    async def run(self, audio: AsyncIterable[bytes] | Iterable[bytes]) -> AsyncIterator[StreamItem]:
        """Send ``audio`` (bytes chunks; pace them yourself for real time) and yield the results
        of the whole stream; raises the last grpc.aio.AioRpcError when it cannot go on."""
        reader = asyncio.ensure_future(self._read_source(audio))
        refused_in_a_row = 0
        try:
            while True:
                base_ms, base_utterance = self._bytes_to_ms(self._buffer_start), self._next_utterance
                position = [self._buffer_start]
                self.calls += 1
                call = self.client.stub.StreamingRecognize(self._requests(position), metadata=self.client._metadata,
                                                           timeout=self.client.timeout)
                responded = False
                try:
                    async for response in call:
                        responded = True
                        for item in items_of(response):
                            item = self._shift(item, base_ms, base_utterance)
                            if isinstance(item, Result) and item.is_final:
                                self._next_utterance = item.utterance_index + 1
                                self._acknowledge(item.end_ms)
                            yield item
                except grpc.aio.AioRpcError:
                    pass
                finally:
                    if not call.done():
                        call.cancel()
                code = await call.code()
                if responded:
                    refused_in_a_row = 0
                if code == grpc.StatusCode.OK:
                    if reader.done():
                        reader.result()  # the source's own error, if any
                    return
                if not responded and code in self.policy.refused_codes:
                    refused_in_a_row += 1
                    self.refusals += 1
                    if refused_in_a_row >= self.policy.attempts:
                        raise await self._error(call)
                    wait = self.policy.backoff_s(refused_in_a_row)
                    log.info("stream refused (%s); retry %d in %.2f s", code.name, refused_in_a_row, wait)
                    await asyncio.sleep(wait)
                    continue
                if self.resume and code in self.dropped_codes and self.resumes < self.policy.max_resumes:
                    self.resumes += 1
                    refused_in_a_row = 0
                    log.info("stream dropped (%s: %s); resuming from %d ms", code.name, await call.details(),
                             self.acked_ms)
                    continue
                raise await self._error(call)
        finally:
            reader.cancel()

    @staticmethod
    async def _error(call) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(await call.code(), await call.initial_metadata(), await call.trailing_metadata(),
                                    details=await call.details())


async def stream_with_retry(client: AsyncStreamingClient, audio: AsyncIterable[bytes] | Iterable[bytes],
                            audio_format: AudioFormat, options: RecognitionOptions = RecognitionOptions(), *,
                            policy: RetryPolicy = RetryPolicy()) -> AsyncIterator[StreamItem]:
    """``client.stream`` that retries a refused start with back-off, but does not resume after
    a drop (the drop's status is raised)."""
    stream = ResumableStream(client, audio_format, options, policy=policy, resume=False)
    async for item in stream.run(audio):
        yield item
