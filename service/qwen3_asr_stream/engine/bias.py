"""Key terms that steer greedy decoding: a trie of the terms' token sequences and a bounded boost.

At each step of the one greedy loop (``decoding.decode``), a row with a ``TermBias`` picks

    argmax(logits + boost * [token extends a partial match of a term, or starts one])

A partial match is a suffix of the row's tokens so far (its text prefix and output) that
is a proper prefix of some term's tokens; while there is one, the bonus goes only to the
tokens that continue it (else to the tokens that start a term), so a failed match costs
nothing later (there is no hypothesis to take back in greedy
decoding). The boost is added to raw logits and bounded by ``MAX_BOOST``: a token wins only
if the model scores it within ``boost`` of its best choice, so a term is never forced into
audio that does not support it. The pick depends only on the logits and the tokens, so the
same terms give the same tokens in streaming finals and offline decoding.

    bias = TermBias.from_sequences([[791, 3409], [3409]], boost=4.0)
    token = bias.pick(logits_row, tokens_so_far)         # logits_row: (vocab,)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

DEFAULT_BOOST = 4.0  # logits; a term's token wins where the model ranks it within this of its best
MAX_BOOST = 20.0
MAX_TERMS = 100
MAX_TERM_CHARS = 64
MAX_TERM_TOKENS = 24


def check_terms(terms: Sequence[str], boost: float) -> None:
    """The one check of what clients may send as key terms; raises ValueError saying what to send."""
    if len(terms) > MAX_TERMS:
        raise ValueError(f"{len(terms)} key terms; the limit is {MAX_TERMS}")
    for term in terms:
        if not term.strip():
            raise ValueError("a key term is empty")
        if len(term) > MAX_TERM_CHARS:
            raise ValueError(f"key term {term[:20]!r}... has {len(term)} characters; the limit is {MAX_TERM_CHARS}")
    if not isinstance(boost, (int, float)) or not 0 <= boost <= MAX_BOOST:
        raise ValueError(f"the key-term boost must be 0-{MAX_BOOST:g}, got {boost!r}")


@dataclass(frozen=True)
class TermBias:
    boost: float
    trie: dict = field(repr=False)  # token -> child node (a dict); a node's children continue a term
    longest: int = 0  # tokens of the longest term

    @classmethod
    def from_sequences(cls, sequences: Sequence[Sequence[int]], boost: float = DEFAULT_BOOST) -> "TermBias":
        trie: dict = {}
        longest = 0
        for seq in sequences:
            seq = list(seq)[:MAX_TERM_TOKENS]
            node = trie
            for token in seq:
                node = node.setdefault(int(token), {})
            longest = max(longest, len(seq))
        return cls(float(boost), trie, longest)

    def next_tokens(self, tokens: Sequence[int]) -> set[int]:
        """Tokens that continue a partial match at the end of ``tokens``; without one, the
        tokens that start a term."""
        out: set[int] = set()
        tail = list(tokens[-(self.longest - 1):]) if self.longest > 1 else []
        for start in range(len(tail)):
            node = self.trie
            for token in tail[start:]:
                node = node.get(token)
                if node is None:
                    break
            else:
                out.update(node)
        return out or set(self.trie)

    def pick(self, logits: torch.Tensor, tokens: Sequence[int]) -> int:
        """The greedy token of ``logits`` (vocab,) after the boost, given the row's ``tokens`` so far."""
        favoured = self.next_tokens(tokens)
        if not favoured or self.boost == 0:
            return int(logits.argmax())
        boosted = logits.float().clone()
        boosted[torch.tensor(sorted(favoured), device=logits.device)] += self.boost
        return int(boosted.argmax())
