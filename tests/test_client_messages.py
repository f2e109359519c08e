"""Client messages and addresses: the default port, the hints for unreadable audio, top-level help."""

from __future__ import annotations

import pytest

from qwen3_asr_client import AsyncStreamingClient, StreamingClient, cli
from qwen3_asr_client.api import DEFAULT_PORT, server_target
from qwen3_asr_client.audio_files import AudioFileError, read_audio


@pytest.mark.parametrize("given, target", [
    ("localhost", f"localhost:{DEFAULT_PORT}"),
    ("asr.example.org", f"asr.example.org:{DEFAULT_PORT}"),
    ("10.0.0.7:443", "10.0.0.7:443"),
    ("localhost:50052", "localhost:50052"),
    ("[::1]", f"[::1]:{DEFAULT_PORT}"),
    ("[::1]:7000", "[::1]:7000"),
    ("::1", f"[::1]:{DEFAULT_PORT}"),
    ("dns:///asr.example.org:443", "dns:///asr.example.org:443"),
    ("unix:/run/asr.sock", "unix:/run/asr.sock"),
])
def test_a_server_without_a_port_means_the_default_port(given, target):
    assert server_target(given) == target
    assert StreamingClient(given).server == AsyncStreamingClient(given).server == target


def test_an_empty_server_address_is_refused():
    with pytest.raises(ValueError, match="HOST"):
        server_target(" ")


def test_not_audio_is_refused_before_sending(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio")
    with pytest.raises(AudioFileError) as error:
        read_audio(path)
    message = str(error.value)
    assert "not an audio file" in message and "pcm_s16le" in message
    assert "install soundfile" not in message


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("    ") and line.split()}
    assert {"stream", "mic", "transcribe", "align", "serve"} <= listed, out
