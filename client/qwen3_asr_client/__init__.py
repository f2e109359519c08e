"""Client of the qwen3-asr-stream speech recognition service (no torch needed).

    from qwen3_asr_client import StreamingClient, AudioFormat, read_audio

    audio = read_audio("speech.wav")
    with StreamingClient("localhost:50051") as client:
        for item in client.stream(audio.chunks(100), audio.format, realtime=True):
            print(item)

The generated protobuf messages are in ``qwen3_asr_client.proto``.
"""

from .api import (
    FINALIZE,
    AsyncRecognitionStream,
    AsyncStreamingClient,
    KeyTerms,
    RecognitionOptions,
    RecognitionStream,
    StreamingClient,
)
from .audio_files import AudioData, AudioFileError, read_audio
from .results import AudioFormat, Result, SpeechEvent, Word

__all__ = [
    "FINALIZE",
    "AsyncRecognitionStream",
    "AsyncStreamingClient",
    "AudioData",
    "AudioFileError",
    "AudioFormat",
    "KeyTerms",
    "RecognitionOptions",
    "RecognitionStream",
    "Result",
    "SpeechEvent",
    "StreamingClient",
    "Word",
    "read_audio",
]
