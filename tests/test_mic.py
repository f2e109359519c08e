"""`qwen3-asr-stream mic` end to end on a virtual microphone.

A PulseAudio daemon of this test's own gives PortAudio (through ALSA's pulse plugin) a
microphone: a ``module-pipe-source`` whose FIFO this test writes espeak-ng speech into at
real-time pace. The client runs on a pseudo-terminal, as a person runs it, and gets
Ctrl-C typed there.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import termios
import threading
import time

import numpy as np
import pytest

from conftest import ROOT, synthesize

pytest.importorskip("webrtcvad")
pytest.importorskip("sounddevice", reason="the mic extra (sounddevice) is needed")
from qwen3_asr_stream.testing.harness import ServerThread, load_engine  # noqa: E402
from qwen3_asr_stream.server.options import ServerOptions  # noqa: E402

RATE = 16000
PHRASES = ["hello world this is a test", "the quick brown fox jumps over the lazy dog", "good night everybody"]
GAP_S = 1.5  # silence between phrases: the VAD ends each utterance
FINAL = re.compile(r"\[(\d+\.\d\d)-(\d+\.\d\d)\]")


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A PulseAudio daemon on a socket of this test's own; the environment that reaches it."""
    for program in ("pulseaudio", "pactl"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (apt-get install pulseaudio pulseaudio-utils "
                        "libasound2-plugins libportaudio2); .ci/run installs it")
    home = tmp_path_factory.mktemp("pulse")
    socket_path = home / "native"
    env = dict(os.environ, HOME=str(home), PULSE_RUNTIME_PATH=str(home / "run"), PULSE_SERVER=f"unix:{socket_path}",
               XDG_RUNTIME_DIR=str(home / "run"))
    (home / "run").mkdir()
    daemon = subprocess.Popen(
        ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no", "--disallow-exit",
         f"--load=module-native-protocol-unix socket={socket_path} auth-anonymous=1", "--load=module-null-sink"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
            assert daemon.poll() is None, daemon.communicate()[1]
            assert time.monotonic() < deadline, "PulseAudio did not start"
            time.sleep(0.1)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(10)


@pytest.fixture
def microphone(pulse, tmp_path):
    """A fresh virtual microphone (the default source); yields its FIFO, opened for writing."""
    fifo = tmp_path / "mic.fifo"
    loaded = subprocess.run(["pactl", "load-module", "module-pipe-source", f"source_name=vmic_{os.getpid()}",
                             f"file={fifo}", "format=s16le", f"rate={RATE}", "channels=1"],
                            env=pulse, capture_output=True, text=True, check=True)
    module = loaded.stdout.strip()
    subprocess.run(["pactl", "set-default-source", f"vmic_{os.getpid()}"], env=pulse, check=True)
    writer = open(fifo, "wb", buffering=0)
    try:
        yield writer
    finally:
        writer.close()
        subprocess.run(["pactl", "unload-module", module], env=pulse, capture_output=True)


@pytest.fixture(scope="module")
def phrases(espeak, tmp_path_factory):
    import soundfile
    import soxr

    folder = tmp_path_factory.mktemp("phrases")
    out = []
    for i, text in enumerate(PHRASES):
        audio, rate = soundfile.read(str(synthesize(espeak, text, folder / f"{i}.wav")), dtype="float32")
        out.append(soxr.resample(audio, rate, RATE).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def server(checkpoints):
    engine = load_engine(str(checkpoints["asr"]), ServerOptions())
    with ServerThread(ServerOptions(port=0, update_interval_ms=500), {"tiny": engine}) as server:
        yield server
    engine.close()


class Terminal:
    """The mic client on a pseudo-terminal: its screen output and Ctrl-C typed on its keyboard."""

    def __init__(self, server: str, env: dict):
        master, slave = os.openpty()

        def controlling_terminal():
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        env = dict(env, PYTHONPATH=os.pathsep.join([str(ROOT / "service"), str(ROOT / "client")]), COLUMNS="200")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "qwen3_asr_client.cli", "mic", "--server", server, "--no-word-timestamps"],
            stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=controlling_terminal)
        os.close(slave)
        self.master = master
        self.screen = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # the client ended and closed the terminal
                return
            if not data:
                return
            self.screen.extend(data)

    @property
    def text(self) -> str:
        return self.screen.decode("utf-8", errors="replace")

    def wait_for(self, words: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while words not in self.text:
            assert self.process.poll() is None, self.text
            assert time.monotonic() < deadline, f"{words!r} not shown: {self.text}"
            time.sleep(0.05)

    def ctrl_c(self) -> None:
        os.write(self.master, b"\x03")

    def wait(self, seconds: float) -> int:
        try:
            return self.process.wait(seconds)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._reader.join(5)
            os.close(self.master)


def speak(fifo, audio: np.ndarray, stop: threading.Event | None = None) -> None:
    """Write audio into the microphone at real-time pace, 100 ms at a time (until ``stop`` is set)."""
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    step, started = RATE // 10 * 2, time.monotonic()
    for i in range(0, len(pcm), step):
        if stop is not None and stop.is_set():
            return
        fifo.write(pcm[i:i + step])
        ahead = started + (i + step) / (2 * RATE) - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)


def test_mic_finals_of_every_phrase_interims_and_ctrl_c(server, pulse, microphone, phrases):
    gap = np.zeros(int(GAP_S * RATE), np.float32)
    terminal = Terminal(server.address, pulse)
    terminal.wait_for("listening on", 30)
    spans, cursor = [], len(gap)
    speak(microphone, gap)
    for i, phrase in enumerate(phrases):
        speak(microphone, phrase)
        spans.append((cursor / RATE, (cursor + len(phrase)) / RATE))
        cursor += len(phrase)
        if i + 1 < len(phrases):
            speak(microphone, gap)
            cursor += len(gap)
    shown_before = terminal.text
    terminal.ctrl_c()  # at the end of the last phrase: its final comes with the end of the stream
    quiet = threading.Event()  # the microphone keeps delivering (silence) until the client ends
    keep_talking = threading.Thread(target=speak, args=(microphone, np.zeros(20 * RATE, np.float32), quiet))
    keep_talking.start()
    try:
        code = terminal.wait(20)
    finally:
        quiet.set()
        keep_talking.join()
    text = terminal.text
    assert code == 0, text
    assert "stopping: waiting for the last final result" in text
    finals = [(float(a), float(b)) for a, b in FINAL.findall(text)]
    assert len(finals) == len(phrases), text
    for (start, end), (first, last) in zip(finals, spans):
        assert start <= first + 0.3 and end >= last - 0.3 and end <= last + GAP_S, (finals, spans)
    assert len(FINAL.findall(shown_before)) == len(phrases) - 1  # the last final came after Ctrl-C
    # Interim results: a partial line rewritten in place with carriage returns before the first final.
    before_first = text[: FINAL.search(text).start()]
    assert re.search(r"\r[^\s\r]", before_first), repr(before_first)


def test_ctrl_c_ends_the_client_when_the_microphone_stops_delivering(server, pulse, microphone, phrases):
    terminal = Terminal(server.address, pulse)
    terminal.wait_for("listening on", 30)
    speak(microphone, np.concatenate([np.zeros(RATE // 2, np.float32), phrases[0],
                                      np.zeros(int(GAP_S * RATE), np.float32)]))
    # The device goes silent as an unplugged USB microphone does: no more audio at all.
    terminal.wait_for("no audio from", 10)
    terminal.ctrl_c()
    code = terminal.wait(15)
    text = terminal.text
    assert code == 0, text
    assert "stopping (the input device delivers no audio)" in text
    assert len(FINAL.findall(text)) == 1, text
