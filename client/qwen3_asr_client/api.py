"""Python API of the streaming speech recognition service, async and sync.

    async with AsyncStreamingClient("localhost:50051") as client:
        async for item in client.stream(chunks, AudioFormat(16000)):
            if isinstance(item, Result) and item.is_final:
                print(item.transcript)

    with StreamingClient("localhost:50051") as client:
        for item in client.stream(chunks, AudioFormat(16000), realtime=True):
            ...

``chunks`` is any iterable (or async iterable) of audio bytes; the ``FINALIZE``
marker among them ends the current utterance without closing the stream. For
interactive use, ``open_stream()`` returns a stream with ``send_audio()``,
``finalize()`` and ``done_writing()`` (half-close) that is iterated for results.
Items are ``Result`` and ``SpeechEvent`` objects, or the raw
``StreamingRecognizeResponse`` messages with ``raw=True``.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterable, AsyncIterator, Iterable, Iterator, Sequence, Union

import grpc
import grpc.aio

from .audio_files import read_audio
from .proto import asr_pb2, asr_pb2_grpc
from .results import ENCODINGS, AudioFormat, Result, StreamItem, items_of

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024  # larger audio is split; 100 ms of 48 kHz stereo float32 is 38.4 KB
DEFAULT_PORT = 50051  # the server's default port
_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


def server_target(server: str) -> str:
    """The gRPC target of a server address: a host without a port gets DEFAULT_PORT (gRPC alone
    would use 443). Targets with a scheme (``dns:///``, ``unix:``, ...) are kept as they are."""
    server = server.strip()
    if not server:
        raise ValueError("the server address is empty; give HOST[:PORT]")
    if server.startswith(_SCHEMES) or "://" in server:
        return server
    if server.startswith("["):  # [IPv6] or [IPv6]:PORT
        return server if "]:" in server else f"{server}:{DEFAULT_PORT}"
    if server.count(":") > 1:  # a bare IPv6 address
        return f"[{server}]:{DEFAULT_PORT}"
    return server if ":" in server else f"{server}:{DEFAULT_PORT}"


class _Finalize:
    def __repr__(self) -> str:
        return "FINALIZE"


FINALIZE = _Finalize()  # put among audio chunks to end the current utterance


@dataclass(frozen=True)
class KeyTerms:
    """Put among audio chunks: these key terms (the words decoding is steered toward) replace
    the stream's for the utterances that start from then on; ``KeyTerms(())`` clears them."""

    terms: tuple[str, ...]


AudioChunk = Union[bytes, bytearray, memoryview, _Finalize, KeyTerms]


@dataclass(frozen=True)
class RecognitionOptions:
    """What to ask of the server; zeros and empties mean the server's defaults."""

    language: str = ""  # empty: detect
    model: str = ""
    context: str = ""  # free text for the model: topic, names, spellings
    hot_words: tuple[str, ...] = ()
    interim_results: bool = True
    word_timestamps: bool = True
    update_interval_ms: int = 0
    endpointing: asr_pb2.EndpointingConfig | None = None
    diarization: bool = False  # speaker labels on finals and words (a server with --speaker-model)
    min_speakers: int = 0  # 0: 1
    max_speakers: int = 0  # 0: the server's limit
    separate_channels: bool = False  # each channel its own results (Result.channel); else mixed down
    # Early end of turn: a pause this long (ms) inside an utterance sends SpeechEvent
    # "eager_end_of_turn" with the transcript so far, then "resumed" if speech goes on; 0 = off.
    eager_pause_ms: int = 0

    def recognition_config(self, audio_format: AudioFormat) -> asr_pb2.RecognitionConfig:
        config = asr_pb2.RecognitionConfig(
            encoding=ENCODINGS[audio_format.encoding],
            sample_rate_hertz=audio_format.sample_rate,
            audio_channel_count=audio_format.channels,
            language_code=self.language,
            model=self.model,
            context=self.context,
            hot_words=list(self.hot_words),
            enable_word_time_offsets=self.word_timestamps,
            enable_separate_recognition_per_channel=self.separate_channels,
        )
        if self.endpointing is not None:
            config.endpointing.CopyFrom(self.endpointing)
        if self.eager_pause_ms:
            config.endpointing.eager_pause_ms = self.eager_pause_ms
        if self.diarization or self.min_speakers or self.max_speakers:
            config.diarization.CopyFrom(asr_pb2.DiarizationConfig(
                enable=self.diarization, min_speakers=self.min_speakers, max_speakers=self.max_speakers))
        return config

    def streaming_request(self, audio_format: AudioFormat) -> asr_pb2.StreamingRecognizeRequest:
        """The first request of a stream."""
        return asr_pb2.StreamingRecognizeRequest(
            streaming_config=asr_pb2.StreamingRecognitionConfig(
                config=self.recognition_config(audio_format),
                interim_results=self.interim_results,
                update_interval_ms=self.update_interval_ms,
            )
        )


_FINALIZE_REQUEST = asr_pb2.StreamingRecognizeRequest(
    control=asr_pb2.Control(kind=asr_pb2.Control.FINALIZE)
)


def _key_terms_request(terms) -> asr_pb2.StreamingRecognizeRequest:
    return asr_pb2.StreamingRecognizeRequest(key_terms=asr_pb2.KeyTerms(terms=list(terms)))


def _audio_requests(data, max_message_bytes: int) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
    data = bytes(data)
    for i in range(0, len(data), max_message_bytes):
        yield asr_pb2.StreamingRecognizeRequest(audio_content=data[i : i + max_message_bytes])


async def _as_async(items: Iterable[AudioChunk]) -> AsyncIterator[AudioChunk]:
    for item in items:
        yield item


def _convert(response: asr_pb2.StreamingRecognizeResponse, raw: bool):
    return [response] if raw else list(items_of(response))


class _Pacer:
    """Sleeps so that audio is sent no faster than it would be recorded."""

    def __init__(self, audio_format: AudioFormat, enabled: bool):
        self._bps = audio_format.bytes_per_second
        self._enabled = enabled and self._bps > 0  # a container's pace is kept by the server
        self._sent = 0
        self._t0: float | None = None

    def delay(self, n_bytes: int) -> float:
        """Seconds to wait before sending the next n_bytes (the time they take to record)."""
        if not self._enabled:
            return 0.0
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        self._sent += n_bytes
        return max(0.0, self._t0 + self._sent / self._bps - now)


class _ClientBase:
    """Connection settings shared by the async and the sync client.

    server: "HOST:PORT" (any gRPC target; a host without a port means DEFAULT_PORT). TLS is used when ``tls`` is set or
    ``root_certificates`` (PEM bytes or a file path) is given; ``token`` is sent as
    ``authorization: Bearer TOKEN`` metadata. ``timeout`` (s) bounds each call.
    Audio larger than ``max_message_bytes`` is split into several messages.
    """

    def __init__(self, server: str, *, tls: bool = False, root_certificates: bytes | str | Path | None = None,
                 token: str | None = None, channel_options: Sequence[tuple[str, Any]] = (),
                 timeout: float | None = None, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.server = server_target(server)
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._options = list(channel_options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._credentials = None
        if tls or root_certificates is not None:
            if isinstance(root_certificates, (str, Path)):
                root_certificates = Path(root_certificates).read_bytes()
            self._credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)

    _grpc: Any = grpc  # grpc or grpc.aio
    _channel: Any = None
    _stub: asr_pb2_grpc.SpeechRecognitionStub | None = None

    @property
    def stub(self) -> asr_pb2_grpc.SpeechRecognitionStub:
        """The generated stub, on a channel opened on first use."""
        if self._stub is None:
            if self._credentials is None:
                self._channel = self._grpc.insecure_channel(self.server, options=self._options)
            else:
                self._channel = self._grpc.secure_channel(self.server, self._credentials, options=self._options)
            self._stub = asr_pb2_grpc.SpeechRecognitionStub(self._channel)
        return self._stub


# --------------------------------------------------------------------------- async

_CORE_INTERNAL = "Internal error from Core"


class _ServerStatus:
    """Makes the status the server sent reach the caller of a grpc.aio streaming call.

    grpc.aio (grpc/grpc#36066, at least up to 1.85): when the server ends a call while a
    write of the client is in flight (a rejected stream: wrong token, full server, bad
    configuration), the failed write sets the call's status to ``INTERNAL: Internal
    error from Core``. If the event loop handles the failed write after the server's
    status, it replaces that status; if before, the server's status replaces it a moment
    later, but the write has already raised INTERNAL. The call's done callbacks run
    once, with the first status set: the one here keeps it, and ``resolve()`` gives the
    server's status in place of that INTERNAL in both orders.
    """

    WAIT_S = 1.0  # after a failed write: how long the server's status may take to arrive

    def __init__(self, call: grpc.aio.Call):
        self._call = call
        self._first: grpc.aio.AioRpcError | None = None
        call.add_done_callback(self._done)

    def _done(self, call: grpc.aio.Call) -> None:
        values = []
        for getter in (call.code, call.initial_metadata, call.trailing_metadata, call.details,
                       call.debug_error_string):
            coroutine = getter()
            try:  # the status is set, so these return without waiting
                coroutine.send(None)
            except StopIteration as done:
                values.append(done.value)
            except Exception:  # noqa: BLE001 - not readable here: keep what grpc reports
                return
            else:  # it would wait: not readable synchronously in this grpc version
                coroutine.close()
                return
        if values[0] != grpc.StatusCode.OK:
            self._first = grpc.aio.AioRpcError(*values)

    @staticmethod
    def _from_core(exc: grpc.aio.AioRpcError) -> bool:
        return exc.code() == grpc.StatusCode.INTERNAL and exc.details() == _CORE_INTERNAL

    async def _current(self) -> grpc.aio.AioRpcError:
        call = self._call
        return grpc.aio.AioRpcError(await call.code(), await call.initial_metadata(), await call.trailing_metadata(),
                                    await call.details(), await call.debug_error_string())

    async def resolve(self, exc: grpc.aio.AioRpcError | None = None) -> grpc.aio.AioRpcError:
        """The server's status in place of a client-side INTERNAL from a failed write; else ``exc``
        (None: the ended call's status)."""
        if exc is None:
            exc = await self._current()
        if not self._from_core(exc):
            return exc
        if self._first is not None and not self._from_core(self._first):
            return self._first  # the failed write replaced the server's status
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.WAIT_S
        while loop.time() < deadline:  # the failed write came first: the server's status replaces it
            await asyncio.sleep(0.01)
            current = await self._current()
            if not self._from_core(current):
                return current
        return exc


class AsyncRecognitionStream:
    """One StreamingRecognize call; iterate it (once) for results."""

    def __init__(self, call: grpc.aio.StreamStreamCall, max_message_bytes: int, raw: bool,
                 status: _ServerStatus | None = None):
        self._call = call
        self._max = max_message_bytes
        self._raw = raw
        self._status = status or _ServerStatus(call)

    async def _write(self, request: asr_pb2.StreamingRecognizeRequest) -> None:
        """Send one request; when the server has ended the call, raise its status."""
        try:
            await self._call.write(request)
        except grpc.aio.AioRpcError as exc:
            raise await self._status.resolve(exc) from None
        except asyncio.InvalidStateError:  # grpc.aio: "RPC already finished" (or misuse after done_writing)
            if not self._call.done():
                raise
            raise await self._status.resolve() from None

    async def send_audio(self, data: bytes) -> None:
        for request in _audio_requests(data, self._max):
            await self._write(request)

    async def finalize(self) -> None:
        """End the current utterance now; the stream stays open."""
        await self._write(_FINALIZE_REQUEST)

    async def set_key_terms(self, terms) -> None:
        """Key terms for the utterances that start from now on (an empty list clears them)."""
        await self._write(_key_terms_request(terms))

    async def done_writing(self) -> None:
        """Half-close: no more audio. The server then sends the last final results."""
        await self._call.done_writing()

    def cancel(self) -> None:
        self._call.cancel()

    async def __aiter__(self) -> AsyncIterator[StreamItem | asr_pb2.StreamingRecognizeResponse]:
        try:
            async for response in self._call:
                for item in _convert(response, self._raw):
                    yield item
        except grpc.aio.AioRpcError as exc:
            raise await self._status.resolve(exc) from None


class AsyncStreamingClient(_ClientBase):
    """asyncio client; its channel opens on first use, inside the running event loop."""

    _grpc = grpc.aio

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None

    async def __aenter__(self) -> "AsyncStreamingClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def open_stream(self, audio_format: AudioFormat, options: RecognitionOptions = RecognitionOptions(),
                          *, raw: bool = False) -> AsyncRecognitionStream:
        """Start a stream and send its configuration."""
        call = self.stub.StreamingRecognize(metadata=self._metadata, timeout=self.timeout)
        stream = AsyncRecognitionStream(call, self.max_message_bytes, raw)
        await stream._write(options.streaming_request(audio_format))
        return stream

    async def stream(self, audio: Iterable[AudioChunk] | AsyncIterable[AudioChunk], audio_format: AudioFormat,
                     options: RecognitionOptions = RecognitionOptions(), *, realtime: bool = False,
                     raw: bool = False) -> AsyncIterator[StreamItem | asr_pb2.StreamingRecognizeResponse]:
        """Send the configuration, every chunk (paced in real time if asked), then half-close;
        yields the results as they come.

        The requests go to gRPC as an iterator, which stops sending by itself when the
        server ends the call: an error status from the server is what the caller gets,
        never a failed write of ours (see ``_ServerStatus``).
        """
        pacer = _Pacer(audio_format, realtime)
        source_error: list[BaseException] = []

        async def requests():
            yield options.streaming_request(audio_format)
            try:
                chunks = audio if isinstance(audio, AsyncIterable) else _as_async(audio)
                async for chunk in chunks:
                    wait, chunk_requests = _chunk_requests(chunk, pacer, self.max_message_bytes)
                    if wait:
                        await asyncio.sleep(wait)
                    for request in chunk_requests:
                        yield request
            except Exception as exc:  # the audio source failed: end the call, re-raise it below
                source_error.append(exc)
                call.cancel()

        call = self.stub.StreamingRecognize(requests(), metadata=self._metadata, timeout=self.timeout)
        status = _ServerStatus(call)
        try:
            async for response in call:
                for item in _convert(response, raw):
                    yield item
        except (grpc.aio.AioRpcError, asyncio.CancelledError) as exc:
            if source_error:
                raise source_error[0] from None
            if isinstance(exc, grpc.aio.AioRpcError):
                raise await status.resolve(exc) from None
            raise
        finally:
            if not call.done():
                call.cancel()

    async def recognize(self, audio: bytes, audio_format: AudioFormat,
                        options: RecognitionOptions = RecognitionOptions(), *, raw: bool = False):
        """Unary recognition of a whole recording: final results, one per utterance."""
        request = asr_pb2.RecognizeRequest(config=options.recognition_config(audio_format), audio=bytes(audio))
        response = await self.stub.Recognize(request, metadata=self._metadata, timeout=self.timeout)
        return response if raw else [Result.from_proto(r) for r in response.results]

    async def recognize_file(self, path: str | Path, options: RecognitionOptions = RecognitionOptions(),
                             *, raw: bool = False):
        audio = read_audio(path)
        return await self.recognize(audio.data, audio.format, options, raw=raw)

    async def get_config(self) -> asr_pb2.GetSpeechRecognitionConfigResponse:
        return await self.stub.GetSpeechRecognitionConfig(
            asr_pb2.GetSpeechRecognitionConfigRequest(), metadata=self._metadata, timeout=self.timeout
        )


def _chunk_requests(chunk: AudioChunk, pacer: _Pacer,
                    max_bytes: int) -> tuple[float, list[asr_pb2.StreamingRecognizeRequest]]:
    """The requests of one chunk, and the seconds to wait first when pacing in real time."""
    if chunk is FINALIZE:
        return 0.0, [_FINALIZE_REQUEST]
    if isinstance(chunk, KeyTerms):
        return 0.0, [_key_terms_request(chunk.terms)]
    return pacer.delay(len(chunk)), list(_audio_requests(chunk, max_bytes))


# --------------------------------------------------------------------------- sync

_DONE = object()


class RecognitionStream:
    """One StreamingRecognize call (blocking API); iterate it (once) for results.

    ``send_audio``/``finalize``/``done_writing`` may be called from any thread,
    e.g. an audio callback, while another thread iterates.
    """

    def __init__(self, stub: asr_pb2_grpc.SpeechRecognitionStub, first: asr_pb2.StreamingRecognizeRequest,
                 conn: _ClientBase, raw: bool):
        self._queue: queue.Queue = queue.Queue()
        self._queue.put(first)
        self._max = conn.max_message_bytes
        self._raw = raw
        self._closed = threading.Event()
        self._call = stub.StreamingRecognize(self._requests(), metadata=conn._metadata, timeout=conn.timeout)

    def _requests(self) -> Iterator[asr_pb2.StreamingRecognizeRequest]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            yield item

    def send_audio(self, data: bytes) -> None:
        if self._closed.is_set():
            raise RuntimeError("send_audio() after done_writing()")
        for request in _audio_requests(data, self._max):
            self._queue.put(request)

    def finalize(self) -> None:
        """End the current utterance now; the stream stays open."""
        self._queue.put(_FINALIZE_REQUEST)

    def set_key_terms(self, terms) -> None:
        """Key terms for the utterances that start from now on (an empty list clears them)."""
        self._queue.put(_key_terms_request(terms))

    def done_writing(self) -> None:
        """Half-close: no more audio. The server then sends the last final results."""
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(_DONE)

    def cancel(self) -> None:
        self._call.cancel()
        self.done_writing()

    def __iter__(self) -> Iterator[StreamItem | asr_pb2.StreamingRecognizeResponse]:
        for response in self._call:
            yield from _convert(response, self._raw)


class StreamingClient(_ClientBase):
    """Blocking client with the same methods as AsyncStreamingClient."""

    _grpc = grpc

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    def __enter__(self) -> "StreamingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open_stream(self, audio_format: AudioFormat, options: RecognitionOptions = RecognitionOptions(),
                    *, raw: bool = False) -> RecognitionStream:
        return RecognitionStream(self.stub, options.streaming_request(audio_format), self, raw)

    def stream(self, audio: Iterable[AudioChunk], audio_format: AudioFormat,
               options: RecognitionOptions = RecognitionOptions(), *, realtime: bool = False,
               raw: bool = False) -> Iterator[StreamItem | asr_pb2.StreamingRecognizeResponse]:
        """Like AsyncStreamingClient.stream; the audio is read on a gRPC thread."""
        failure: list[BaseException] = []

        def requests():
            yield options.streaming_request(audio_format)
            pacer = _Pacer(audio_format, realtime)
            try:
                for chunk in audio:
                    wait, chunk_requests = _chunk_requests(chunk, pacer, self.max_message_bytes)
                    if wait:
                        time.sleep(wait)
                    yield from chunk_requests
            except Exception as exc:
                failure.append(exc)
                raise

        call = self.stub.StreamingRecognize(requests(), metadata=self._metadata, timeout=self.timeout)
        try:
            for response in call:
                yield from _convert(response, raw)
        except grpc.RpcError:
            if failure:
                raise failure[0] from None  # the audio source failed
            raise
        finally:
            call.cancel()  # no-op when the call is over

    def recognize(self, audio: bytes, audio_format: AudioFormat,
                  options: RecognitionOptions = RecognitionOptions(), *, raw: bool = False):
        request = asr_pb2.RecognizeRequest(config=options.recognition_config(audio_format), audio=bytes(audio))
        response = self.stub.Recognize(request, metadata=self._metadata, timeout=self.timeout)
        return response if raw else [Result.from_proto(r) for r in response.results]

    def recognize_file(self, path: str | Path, options: RecognitionOptions = RecognitionOptions(),
                       *, raw: bool = False):
        audio = read_audio(path)
        return self.recognize(audio.data, audio.format, options, raw=raw)

    def get_config(self) -> asr_pb2.GetSpeechRecognitionConfigResponse:
        return self.stub.GetSpeechRecognitionConfig(
            asr_pb2.GetSpeechRecognitionConfigRequest(), metadata=self._metadata, timeout=self.timeout
        )
