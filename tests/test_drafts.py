"""Draft verification in the one decoding loop: the same tokens as decoding without a draft."""

from __future__ import annotations

import pytest
import torch

from conftest import DRAFT_MAX_TOKENS, draft_kinds, draft_row, tone_mix, tone_prompt
from qwen3_asr_stream.checkpoint import load_model
from qwen3_asr_stream.engine.decoding import StopRules, decode, greedy_generate
from qwen3_asr_stream.engine.options import PolicyOptions
from qwen3_asr_stream.engine.runner import ModelRunner
from qwen3_asr_stream.engine.utterance import Utterance, UtteranceSpec
from qwen3_asr_stream.text.prompts import asr_prompt_ids
from qwen3_asr_stream.text.tokenizer import TextTokenizer


@pytest.fixture(scope="module")
def asr(checkpoints):
    folder = checkpoints["asr"]
    return load_model(folder), TextTokenizer.from_folder(folder)


def test_every_draft_gives_the_tokens_of_decoding_without_one(asr):
    model, tokenizer = asr
    prompt, audio = tone_prompt(model, tokenizer, 5.3, seed=2)
    truth = greedy_generate(model, [prompt], [audio],
                            StopRules(tokenizer.end_of_text_ids(), DRAFT_MAX_TOKENS))[0]
    assert len(truth) > 4, "the random model should say something"
    plain = decode(model, [draft_row(model, tokenizer, prompt, audio)])[0]
    assert plain.tokens == truth
    for name, draft in draft_kinds(truth).items():
        row = decode(model, [draft_row(model, tokenizer, prompt, audio, draft)])[0]
        assert row.tokens == truth, name
        # The accepted run is the longest common prefix of the draft and the greedy tokens.
        common = next((i for i, (a, b) in enumerate(zip(draft, truth)) if a != b), min(len(draft), len(truth)))
        assert row.accepted == common, name
        # The cache was cut back to what the greedy tokens put there: the same slots and values
        # (a finished row may keep its last accepted token, which nothing reads).
        assert plain.cache.length <= row.cache.length <= plain.cache.length + 1, name
        n = plain.cache.length
        assert torch.allclose(row.cache.storage[..., :n, :], plain.cache.storage[..., :n, :], atol=1e-5), name


def test_batched_rows_with_different_acceptances_equal_each_alone(asr):
    model, tokenizer = asr
    cases = []
    for i, (seconds, kind) in enumerate([(2.2, "right"), (7.9, "wrong"), (4.1, "partly right"), (9.5, "empty"),
                                         (3.3, "longer than greedy")]):
        prompt, audio = tone_prompt(model, tokenizer, seconds, seed=10 + i)
        truth = greedy_generate(model, [prompt], [audio],
                                StopRules(tokenizer.end_of_text_ids(), DRAFT_MAX_TOKENS))[0]
        cases.append((prompt, audio, draft_kinds(truth)[kind], truth))
    alone = [decode(model, [draft_row(model, tokenizer, p, a, d)])[0] for p, a, d, _ in cases]
    batched = decode(model, [draft_row(model, tokenizer, p, a, d) for p, a, d, _ in cases])
    assert [r.tokens for r in batched] == [r.tokens for r in alone] == [t for *_, t in cases]
    assert [r.accepted for r in batched] == [r.accepted for r in alone]
    assert len({r.accepted for r in batched}) > 2  # the rows really accepted different amounts


def test_stop_rules_hold_inside_an_accepted_draft(asr):
    """Token bound and repetition guard cut an accepted draft exactly where greedy decoding stops."""
    model, tokenizer = asr
    prompt, audio = tone_prompt(model, tokenizer, 6.0, seed=4)
    truth = greedy_generate(model, [prompt], [audio],
                            StopRules(tokenizer.end_of_text_ids(), DRAFT_MAX_TOKENS))[0]
    short = decode(model, [draft_row(model, tokenizer, prompt, audio, truth, max_tokens=5)])[0]
    assert short.tokens == truth[:5] and short.done
    looping = [5, 6, 7] * 10
    guarded = decode(model, [draft_row(model, tokenizer, prompt, audio, looping, repetition_limit=3)])[0]
    unguarded = decode(model, [draft_row(model, tokenizer, prompt, audio, repetition_limit=3)])[0]
    assert guarded.tokens == unguarded.tokens


def _runner(model, tokenizer, draft: bool, max_final=48):
    policy = PolicyOptions(max_tokens_per_update=10, max_tokens_final=max_final, repetition_limit=0, draft=draft)
    return ModelRunner(model, policy, tokenizer.end_of_text_ids())


def test_streaming_updates_and_finals_equal_those_without_drafts(asr):
    model, tokenizer = asr
    d = model.dims.audio
    spec = UtteranceSpec(*asr_prompt_ids(tokenizer))
    audios = [tone_mix(s, seed=50 + i) for i, s in enumerate([9.0, 6.5, 12.2])]

    def run(draft: bool):
        runner = _runner(model, tokenizer, draft)
        utts = [Utterance(i + 1, spec, d.window_frames, d.window_tokens, d.num_mel_bins) for i in range(3)]
        out, accepted = [], 0
        for end in range(32000, 13 * 16000, 32000):
            live = [(u, a) for u, a in zip(utts, audios) if end - 32000 < a.shape[0]]
            for u, a in live:
                u.append(a[end - 32000 : end])
            for r in runner.update([(u, False) for u, _ in live]):
                out.append(r.tokens)
                accepted += r.accepted_tokens
        finals = runner.update([(u, True) for u in utts])
        return out + [r.tokens for r in finals], accepted + sum(r.accepted_tokens for r in finals), finals

    plain, none_accepted, _ = run(False)
    drafted, some_accepted, _ = run(True)
    assert drafted == plain
    assert none_accepted == 0 and some_accepted > 0


def test_a_right_draft_makes_the_final_cost_no_steps_whatever_the_text_length(asr):
    """Bounded work: with a fully right draft, the decode steps of a final do not grow with the text."""
    model, tokenizer = asr
    d = model.dims.audio
    spec = UtteranceSpec(*asr_prompt_ids(tokenizer))
    steps = {}
    for max_final in (8, 24, 64):
        truths = []
        for draft in (False, True):
            runner = _runner(model, tokenizer, draft=False, max_final=max_final)
            utt = Utterance(1, spec, d.window_frames, d.window_tokens, d.num_mel_bins)
            utt.append(tone_mix(9.0, seed=8))
            if draft:  # the last hypothesis is exactly what the final decodes
                utt.hypothesis.tokens = list(truths[0])
                runner.policy = PolicyOptions(max_tokens_per_update=10, max_tokens_final=max_final,
                                              repetition_limit=0, draft=True)
            final = runner.update([(utt, True)])[0]
            truths.append(final.tokens)
            steps[(max_final, draft)] = (final.decode_steps, len(final.tokens))
        assert truths[0] == truths[1]
    assert steps[(64, False)][0] > steps[(8, False)][0]  # without a draft: one step per token
    assert steps[(64, False)][1] > 24  # the long case really produced a long text
    assert all(steps[(m, True)][0] <= 1 for m in (8, 24, 64))


def test_after_a_rejected_draft_the_next_update_only_probes(asr):
    """A draft mostly rejected is not offered whole again: the next update offers draft_probe_tokens;
    a kept probe brings the whole draft back for an interim, while a final waits for a whole draft
    kept again (the tokens are the same either way)."""
    model, tokenizer = asr
    d = model.dims.audio
    runner = _runner(model, tokenizer, True)
    utt = Utterance(1, UtteranceSpec(*asr_prompt_ids(tokenizer)), d.window_frames, d.window_tokens, d.num_mel_bins)
    utt.append(tone_mix(4.0, seed=61))
    truth = runner.update([(utt, True)])[0].tokens
    assert len(truth) > 4, "precondition: the random model says something"
    wrong = [(t + 7) % 150000 for t in truth]

    def final_with(hypothesis):
        utt.hypothesis.tokens = list(hypothesis)
        return runner.update([(utt, True)])[0]

    rejected = final_with(wrong)
    assert rejected.draft_tokens == len(wrong) and rejected.accepted_tokens == 0 and utt.draft_kept == 0.0
    probe = final_with(truth)  # after a rejection, only a probe, right as the draft is
    assert probe.draft_tokens == runner.policy.draft_probe_tokens == probe.accepted_tokens
    assert probe.tokens == rejected.tokens == truth and utt.probe_kept
    still = final_with(truth)  # a final does not trust a kept probe: probes again
    assert still.draft_tokens == runner.policy.draft_probe_tokens
    utt.draft_kept = 1.0  # a whole draft kept (as an interim that takes the probe's way back would)
    again = final_with(truth)
    assert again.draft_tokens == len(truth) and again.decode_steps <= 1 and again.tokens == truth
