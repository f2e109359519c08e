"""The client against a fake in-process grpc.aio servicer on 127.0.0.1.

The fake echoes what it received, so the tests see exactly what the client sent:
configuration first, every audio byte in order, FINALIZE controls, the half-close.
"""

import asyncio
import json
import struct
import os
import subprocess
from pathlib import Path
import sys
import threading
import time
import types
import wave

import grpc
import grpc.aio
import numpy as np
import pytest

from qwen3_asr_client import (
    FINALIZE,
    AsyncStreamingClient,
    AudioFormat,
    RecognitionOptions,
    Result,
    SpeechEvent,
    StreamingClient,
    Word,
    read_audio,
)
from qwen3_asr_client import cli
from qwen3_asr_client.audio_files import AudioFileError
from qwen3_asr_client.proto import asr_pb2, asr_pb2_grpc

pb = asr_pb2


def final(transcript, index, reason, words=()):
    return pb.StreamingRecognitionResult(
        transcript=transcript, stable_text=transcript, is_final=True, stability=1.0, utterance_index=index,
        end_reason=reason, language_code="English",
        words=[pb.WordInfo(word=w, start_ms=100 * i, end_ms=100 * i + 80) for i, w in enumerate(words)],
    )


class EchoServicer(asr_pb2_grpc.SpeechRecognitionServicer):
    def __init__(self):
        self.log = []  # (kind, value) in the order received, per stream
        self.metadata = {}

    async def StreamingRecognize(self, request_iterator, context):
        self.metadata = dict(context.invocation_metadata())
        received, index = 0, 0
        async for request in request_iterator:
            kind = request.WhichOneof("streaming_request")
            if kind == "streaming_config":
                self.log.append(("config", request.streaming_config))
                yield pb.StreamingRecognizeResponse(
                    speech_event=pb.SpeechEvent(type=pb.SpeechEvent.SPEECH_START, offset_ms=0))
            elif kind == "audio_content":
                self.log.append(("audio", request.audio_content))
                received += len(request.audio_content)
                yield pb.StreamingRecognizeResponse(results=[pb.StreamingRecognitionResult(
                    transcript=f"{received} bytes", stability=0.5, utterance_index=index)])
            else:
                self.log.append(("control", request.control.kind))
                yield pb.StreamingRecognizeResponse(results=[final("finalized", index, pb.FORCED, ["hello", "world"])])
                index += 1
        self.log.append(("half_close", None))
        yield pb.StreamingRecognizeResponse(
            results=[final(f"closed after {received} bytes", index, pb.END_OF_STREAM)],
            speech_event=pb.SpeechEvent(type=pb.SpeechEvent.SPEECH_END, offset_ms=1234, utterance_index=index))

    async def Recognize(self, request, context):
        self.metadata = dict(context.invocation_metadata())
        self.log.append(("recognize", request.config))
        return pb.RecognizeResponse(results=[final(f"{len(request.audio)} bytes", 0, pb.END_OF_STREAM)])

    async def GetSpeechRecognitionConfig(self, request, context):
        return pb.GetSpeechRecognitionConfigResponse(languages=["English"], min_sample_rate_hertz=8000)


@pytest.fixture
def server():
    servicer = EchoServicer()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():
        aio_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        asr_pb2_grpc.add_SpeechRecognitionServicer_to_server(servicer, aio_server)
        port = aio_server.add_insecure_port("127.0.0.1:0")
        await aio_server.start()
        return aio_server, port

    aio_server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    servicer.address = f"127.0.0.1:{port}"
    yield servicer
    asyncio.run_coroutine_threadsafe(aio_server.stop(None), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def odd_chunks(data: bytes, sizes=(1, 333, 2, 4097, 7)):
    chunks, pos, i = [], 0, 0
    while pos < len(data):
        chunks.append(data[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    return chunks


AUDIO = np.random.default_rng(0).integers(-3000, 3000, 8000, dtype="<i2").tobytes()  # 0.5 s at 16 kHz
FMT = AudioFormat(16000, 1, "LINEAR16")
OPTIONS = RecognitionOptions(language="English", hot_words=("Qwen",), word_timestamps=False,
                             endpointing=pb.EndpointingConfig(vad_aggressiveness=0, max_utterance_ms=9000))


def check_log(log, chunks_before, chunks_after):
    kinds = [kind for kind, _ in log]
    assert kinds[0] == "config" and kinds.count("config") == 1
    config = log[0][1]
    assert config.interim_results and config.config.language_code == "English"
    assert config.config.sample_rate_hertz == 16000 and config.config.audio_channel_count == 1
    assert config.config.encoding == pb.LINEAR_PCM and not config.config.enable_word_time_offsets
    assert list(config.config.hot_words) == ["Qwen"]
    assert config.config.endpointing.HasField("vad_aggressiveness")  # 0 is sent as a set value
    assert config.config.endpointing.max_utterance_ms == 9000
    control_at = kinds.index("control")
    assert log[control_at][1] == pb.Control.FINALIZE
    before = b"".join(v for k, v in log[:control_at] if k == "audio")
    after = b"".join(v for k, v in log[control_at:] if k == "audio")
    assert before == b"".join(chunks_before) and after == b"".join(chunks_after)  # complete, in order
    assert kinds[-1] == "half_close"


def check_items(items):
    assert isinstance(items[0], SpeechEvent) and items[0].type == "start"
    finals = [i for i in items if isinstance(i, Result) and i.is_final]
    assert [f.transcript for f in finals] == ["finalized", f"closed after {len(AUDIO)} bytes"]
    assert [f.end_reason for f in finals] == ["forced", "end_of_stream"]
    assert [(w.word, w.start_ms, w.end_ms) for w in finals[0].words] == [("hello", 0, 80), ("world", 100, 180)]
    assert isinstance(items[-1], SpeechEvent) and items[-1].type == "end" and items[-1].offset_ms == 1234


def test_async_stream_sends_config_audio_finalize_and_half_close(server):
    chunks = odd_chunks(AUDIO)
    half = len(chunks) // 2

    async def run():
        async def audio():  # an async source works as well as a list
            for chunk in chunks[:half]:
                yield chunk
            yield FINALIZE
            for chunk in chunks[half:]:
                yield chunk

        async with AsyncStreamingClient(server.address, token="s3cret") as client:
            return [item async for item in client.stream(audio(), FMT, OPTIONS)]

    items = asyncio.run(run())
    check_log(server.log, chunks[:half], chunks[half:])
    check_items(items)
    assert server.metadata["authorization"] == "Bearer s3cret"


def test_async_interactive_stream_and_raw_responses(server):
    async def run():
        async with AsyncStreamingClient(server.address) as client:
            stream = await client.open_stream(FMT, OPTIONS, raw=True)
            await stream.send_audio(AUDIO[:1001])
            await stream.finalize()
            await stream.send_audio(AUDIO[1001:])
            await stream.done_writing()
            return [response async for response in stream]

    responses = asyncio.run(run())
    assert all(isinstance(r, pb.StreamingRecognizeResponse) for r in responses)
    check_log(server.log, [AUDIO[:1001]], [AUDIO[1001:]])
    assert "authorization" not in server.metadata


def test_large_audio_is_split_into_bounded_messages(server):
    async def run():
        async with AsyncStreamingClient(server.address, max_message_bytes=3000) as client:
            return [item async for item in client.stream([AUDIO, FINALIZE], FMT, OPTIONS)]

    asyncio.run(run())
    sizes = [len(v) for k, v in server.log if k == "audio"]
    assert max(sizes) == 3000 and b"".join(v for k, v in server.log if k == "audio") == AUDIO


def test_sync_stream_and_interactive_stream(server):
    chunks = odd_chunks(AUDIO)
    with StreamingClient(server.address, token="t") as client:
        items = list(client.stream([*chunks[:3], FINALIZE, *chunks[3:]], FMT, OPTIONS))
        check_log(server.log, chunks[:3], chunks[3:])
        check_items(items)

        server.log.clear()
        stream = client.open_stream(FMT, OPTIONS)
        stream.send_audio(AUDIO[:10])
        stream.finalize()
        stream.send_audio(AUDIO[10:])
        stream.done_writing()
        check_items(list(stream))
        check_log(server.log, [AUDIO[:10]], [AUDIO[10:]])
        assert server.metadata["authorization"] == "Bearer t"


def test_realtime_pacing():
    pacer_format = AudioFormat(16000, 1, "LINEAR16")
    from qwen3_asr_client.api import _Pacer

    pacer = _Pacer(pacer_format, enabled=True)
    waits = [pacer.delay(3200) for _ in range(3)]  # 3 x 100 ms
    assert waits[0] == pytest.approx(0.1, abs=0.02) and waits[2] == pytest.approx(0.3, abs=0.02)
    assert _Pacer(pacer_format, enabled=False).delay(3200) == 0


def test_sync_stream_realtime_takes_real_time(server):
    start = time.monotonic()
    with StreamingClient(server.address) as client:
        list(client.stream(odd_chunks(AUDIO[:6400], (1600,)), FMT, OPTIONS, realtime=True))  # 200 ms
    assert time.monotonic() - start >= 0.18


def test_audio_source_error_is_raised(server):
    def broken():
        yield AUDIO[:100]
        raise OSError("microphone unplugged")

    async def run():
        async with AsyncStreamingClient(server.address) as client:
            return [item async for item in client.stream(broken(), FMT, OPTIONS)]

    with pytest.raises(OSError, match="unplugged"):
        asyncio.run(run())
    with StreamingClient(server.address) as client, pytest.raises(OSError, match="unplugged"):
        list(client.stream(broken(), FMT, OPTIONS))


def test_recognize_and_get_config(server, tmp_path):
    path = tmp_path / "a.wav"
    write_wav16(path, AUDIO, 16000, 1)
    with StreamingClient(server.address, token="x") as client:
        (result,) = client.recognize_file(path, OPTIONS)
        assert result.transcript == f"{len(AUDIO)} bytes" and result.is_final
        assert client.get_config().languages == ["English"]
    assert server.log[-1][0] == "recognize" and server.log[-1][1].language_code == "English"

    async def run():
        async with AsyncStreamingClient(server.address) as client:
            return await client.recognize(AUDIO, FMT, OPTIONS, raw=True), await client.get_config()

    response, config = asyncio.run(run())
    assert isinstance(response, pb.RecognizeResponse) and config.min_sample_rate_hertz == 8000


# -- audio files -----------------------------------------------------------------------------------


def write_wav16(path, data: bytes, rate: int, channels: int):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data)


def write_wav_raw(path, data: bytes, rate: int, channels: int, tag: int, bits: int, extensible=False):
    block = channels * bits // 8
    if extensible:
        fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, channels, rate, rate * block, block, bits, 22, bits, 0,
                          struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71")
    else:
        fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\x00"
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def test_read_wav_formats(tmp_path):
    write_wav16(tmp_path / "s16.wav", AUDIO, 44100, 2)
    audio = read_audio(tmp_path / "s16.wav")
    assert audio.data == AUDIO and audio.format == AudioFormat(44100, 2, "LINEAR16")

    floats = np.linspace(-1, 1, 1000, dtype="<f4").tobytes()
    write_wav_raw(tmp_path / "f32.wav", floats, 8000, 1, tag=3, bits=32)
    audio = read_audio(tmp_path / "f32.wav")
    assert audio.data == floats and audio.format == AudioFormat(8000, 1, "FLOAT32")
    assert audio.duration_s == pytest.approx(0.125)
    assert [len(c) for c in audio.chunks(50)] == [1600, 1600, 800]

    write_wav_raw(tmp_path / "ext.wav", floats, 48000, 1, tag=3, bits=32, extensible=True)
    assert read_audio(tmp_path / "ext.wav").format == AudioFormat(48000, 1, "FLOAT32")


def test_read_wav_data_chunk_bounds(tmp_path):
    """The data chunk's size bounds the samples (a chunk after it is not audio); a file written while
    streaming (size left at 0xFFFFFFFF or 0) is read to its end; a header cut before its data chunk
    is an error that says so."""
    path = tmp_path / "tail.wav"
    write_wav16(path, AUDIO, 16000, 1)
    path.write_bytes(path.read_bytes() + b"LIST" + struct.pack("<I", 4) + b"abcd")
    assert read_audio(path).data == AUDIO
    for unset in (0xFFFFFFFF, 0):
        blob = bytearray((tmp_path / "tail.wav").read_bytes()[:-12])
        data_at = blob.index(b"data")
        blob[data_at + 4 : data_at + 8] = struct.pack("<I", unset)
        (tmp_path / "streamed.wav").write_bytes(bytes(blob))
        assert read_audio(tmp_path / "streamed.wav").data == AUDIO
    (tmp_path / "cut.wav").write_bytes(path.read_bytes()[:36])
    with pytest.raises(AudioFileError, match="not a valid WAV file .no data chunk"):
        read_audio(tmp_path / "cut.wav")


def test_compressed_files_are_sent_as_they_are(tmp_path, monkeypatch):
    """No codec library on the client: other WAV sample formats and compressed files go to the
    server as their bytes, with the encoding that names them; what is no audio file is refused."""
    monkeypatch.setitem(sys.modules, "soundfile", None)
    monkeypatch.setitem(sys.modules, "av", None)
    write_wav_raw(tmp_path / "s24.wav", bytes(300), 16000, 1, tag=1, bits=24)
    files = {"s24.wav": (tmp_path / "s24.wav").read_bytes(), "x.mp3": b"ID3\x03" + bytes(20),
             "x.m4a": b"\0\0\0\x20ftypM4A " + bytes(20), "x.webm": b"\x1a\x45\xdf\xa3" + bytes(20),
             "x.flac": b"fLaC" + bytes(20), "x.opus": b"OggS" + bytes(24) + b"OpusHead" + bytes(11)}
    expected = {"x.flac": "FLAC", "x.opus": "OGG_OPUS"}
    for name, blob in files.items():
        (tmp_path / name).write_bytes(blob)
        audio = read_audio(tmp_path / name)
        assert audio.data == blob and audio.format == AudioFormat(0, 1, expected.get(name, "CONTAINER"))
        assert audio.format.bytes_per_second == 0 and audio.format.chunk_bytes(100) == 4096
    (tmp_path / "notes.txt").write_text("this is not audio")
    with pytest.raises(AudioFileError, match="not an audio file.*pcm_s16le"):
        read_audio(tmp_path / "notes.txt")
    with pytest.raises(AudioFileError, match="cannot read"):
        read_audio(tmp_path / "missing.wav")


# -- command line ----------------------------------------------------------------------------------


def test_cli_stream_json_prints_one_object_per_response(server, tmp_path, capsys):
    path = tmp_path / "speech.wav"
    write_wav16(path, AUDIO, 16000, 1)
    code = cli.main(["stream", str(path), "--server", server.address, "--json", "--chunk-ms", "100",
                     "--language", "English", "--no-interim", "--no-word-timestamps", "--token", "k"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    objects = [json.loads(line) for line in lines]
    assert len(objects) == 1 + 5 + 1  # speech start, one per 100 ms chunk, the last final
    assert objects[0]["speech_event"]["type"] == "SPEECH_START"
    assert objects[1]["results"][0]["transcript"] == "3200 bytes"
    assert objects[1]["results"][0]["is_final"] is False  # fields are printed even when default
    assert objects[-1]["results"][0]["end_reason"] == "END_OF_STREAM"
    config = server.log[0][1]
    assert not config.interim_results and not config.config.enable_word_time_offsets
    assert server.metadata["authorization"] == "Bearer k"


def test_cli_stream_text_prints_finals_with_word_times(server, tmp_path, capsys):
    path = tmp_path / "speech.wav"
    write_wav16(path, AUDIO, 16000, 1)
    assert cli.main(["stream", str(path), "--server", server.address]) == 0
    out = capsys.readouterr().out
    assert "\r" not in out  # not a terminal: no partial lines
    assert out.splitlines() == [f"[0.00-0.00] (English) closed after {len(AUDIO)} bytes"]


def test_transcript_printer_rewrites_partial_line_on_a_terminal():
    import io

    out = io.StringIO()
    printer = cli.TranscriptPrinter(out, live=True)
    partial = Result("hello wor", False, 0.5, "hello", " wor", "", (), 0, 0, 500, 500, 3, "")
    printer.handle(partial)
    printer.handle(Result("hi", False, 0.5, "", "hi", "", (), 0, 0, 600, 600, 3, ""))
    printer.handle(Result("hello world", True, 1.0, "hello world", "", "English",
                          (Word("hello", 120, 480), Word("world", 520, 900)), 0, 0, 1200, 1200, 40, "silence"))
    text = out.getvalue()
    assert text.startswith("\rhello wor\rhi       ")
    assert text.endswith("[0.00-1.20] (English) hello world\n    hello[0.12-0.48] world[0.52-0.90]\n")


def test_cli_unreachable_server_exits_1(tmp_path, capsys):
    path = tmp_path / "speech.wav"
    write_wav16(path, AUDIO[:320], 16000, 1)
    with socket_closed_port() as address:
        assert cli.main(["stream", str(path), "--server", address]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


class socket_closed_port:
    """A loopback address where nothing listens."""

    def __enter__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self.sock.close()


def test_cli_mic_without_sounddevice(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import fails as if not installed
    assert cli.main(["mic", "--server", "127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "needs the sounddevice package" in err and "qwen3-asr-stream[mic]" in err


def test_cli_mic_without_portaudio_or_input_device(monkeypatch, capsys):
    class NoPortAudio:
        def find_spec(self, name, path=None, target=None):
            if name == "sounddevice":
                raise OSError("PortAudio library not found")

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoPortAudio(), *sys.meta_path])
    assert cli.main(["mic"]) == 2
    assert "PortAudio library is not installed" in capsys.readouterr().err
    monkeypatch.setattr(sys, "meta_path", sys.meta_path[1:])

    fake = types.ModuleType("sounddevice")
    fake.PortAudioError = type("PortAudioError", (Exception,), {})

    def query_devices(device=None, kind=None):
        raise fake.PortAudioError("No input device matching")

    fake.query_devices = query_devices
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    assert cli.main(["mic", "--device", "3"]) == 2
    assert "no audio input device" in capsys.readouterr().err


def test_server_commands_are_delegated(monkeypatch, capsys):
    seen = []
    fake = types.ModuleType("qwen3_asr_stream.cli")
    fake.main = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "qwen3_asr_stream.cli", fake)
    assert cli.main(["serve", "--port", "1"]) == 7 and seen == [["serve", "--port", "1"]]

    monkeypatch.setitem(sys.modules, "qwen3_asr_stream.cli", None)  # the server extra is missing
    assert cli.main(["transcribe", "x.wav"]) == 2
    assert ("the server commands need the server extra: pip install 'qwen3-asr-stream[server]'"
            in capsys.readouterr().err)


def test_client_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import qwen3_asr_client, qwen3_asr_client.cli, qwen3_asr_client.mic, qwen3_asr_client.proto\n"
            "assert 'qwen3_asr_stream' not in sys.modules")
    client_root = str(Path(__file__).resolve().parents[1] / "client")
    env = dict(os.environ, PYTHONPATH=client_root)  # the client alone: the server package is not on the path
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)


def test_cli_mic_streams_until_ctrl_c_then_prints_the_last_final(server, monkeypatch, capsys):
    import _thread

    blocks = [AUDIO[i : i + 3200] for i in range(0, len(AUDIO), 3200)]

    class FakeInput:
        def __init__(self, samplerate, blocksize, device, channels, dtype, callback):
            assert (samplerate, blocksize, channels, dtype) == (16000, 1600, 1, "int16")
            self.callback = callback

        def _run(self):
            for block in blocks:
                self.callback(memoryview(block), len(block) // 2, None, None)
                time.sleep(0.005)
            time.sleep(0.05)
            _thread.interrupt_main()  # the user presses Ctrl-C

        def start(self):
            self.thread = threading.Thread(target=self._run)
            self.thread.start()

        def stop(self):
            self.thread.join()

        def close(self):
            pass

    fake = types.ModuleType("sounddevice")
    fake.PortAudioError = type("PortAudioError", (Exception,), {})
    fake.query_devices = lambda device=None, kind=None: {"name": "Fake mic", "default_samplerate": 44100.0}
    fake.check_input_settings = lambda **kwargs: None
    fake.RawInputStream = FakeInput
    monkeypatch.setitem(sys.modules, "sounddevice", fake)

    assert cli.main(["mic", "--server", server.address]) == 0
    captured = capsys.readouterr()
    assert "listening on Fake mic at 16000 Hz" in captured.err
    assert captured.out.splitlines() == [f"[0.00-0.00] (English) closed after {len(AUDIO)} bytes"]
    assert b"".join(v for k, v in server.log if k == "audio") == AUDIO
    assert server.log[-1][0] == "half_close"
