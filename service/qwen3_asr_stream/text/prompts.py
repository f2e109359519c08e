"""The exact prompt text of the official chat template and of the aligner."""

from __future__ import annotations

from .tokenizer import ASR_TEXT, AUDIO_END, AUDIO_PAD, AUDIO_START, IM_END, IM_START


def asr_prompt(context: str = "", language: str | None = None) -> tuple[str, str]:
    """The ASR prompt around the audio placeholders, as (head, tail).

    The full prompt is ``head + AUDIO_PAD * n_audio_tokens + tail``. With a forced
    language the tail ends with ``language {Name}<asr_text>`` and the model answers
    with the transcript only.
    """
    head = f"{IM_START}system\n{context or ''}{IM_END}\n{IM_START}user\n{AUDIO_START}"
    tail = f"{AUDIO_END}{IM_END}\n{IM_START}assistant\n"
    if language:
        tail += f"language {language}{ASR_TEXT}"
    return head, tail


def asr_prompt_text(n_audio_tokens: int, context: str = "", language: str | None = None) -> str:
    head, tail = asr_prompt(context, language)
    return head + AUDIO_PAD * n_audio_tokens + tail


def asr_prompt_ids(tokenizer, context: str = "", language: str | None = None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ASR prompt as ids: (head, tail) around the audio placeholders."""
    head, tail = asr_prompt(context, language)
    return tuple(tokenizer.encode(head)), tuple(tokenizer.encode(tail))
