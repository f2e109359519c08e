"""Audio in, torch-free: client bytes -> 16 kHz float32 samples (``input``), utterances (``vad``).

The model's front end (log-mel, torch) is ``qwen3_asr_stream.audio.frontend``.
"""

SAMPLE_RATE = 16_000  # what the VAD, the aligner and the model consume
SAMPLES_PER_MS = SAMPLE_RATE // 1000
