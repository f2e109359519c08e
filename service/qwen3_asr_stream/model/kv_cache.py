"""An explicit key/value cache for the text decoder.

One buffer pair per layer of shape ``(batch, kv_heads, capacity, head_dim)``.
All rows share one write cursor; a boolean ``valid`` mask per slot says which
slots hold real tokens (left padding of a batch of unequal prompts is invalid),
and ``next_position`` holds each row's next rotary position. The decoder writes
the new keys and values of every layer at ``cursor`` and then the model calls
:meth:`advance` once.
"""

from __future__ import annotations

import copy

import torch


class KVCache:
    def __init__(
        self,
        n_layers: int,
        batch: int,
        kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        self.n_layers = n_layers
        self.batch = batch
        self.kv_heads = kv_heads
        self.head_dim = head_dim
        self.dtype = dtype
        self.device = torch.device(device)
        self.keys = [self._empty(capacity) for _ in range(n_layers)]
        self.values = [self._empty(capacity) for _ in range(n_layers)]
        self.valid = torch.zeros(batch, capacity, dtype=torch.bool, device=self.device)
        self.next_position = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.cursor = 0
        # Fixed-shape decoding (CUDA graphs): a one-element device tensor holding the slot
        # that ``write`` fills; attention then spans the whole capacity.
        self.static_slot: torch.Tensor | None = None

    def _empty(self, capacity: int) -> torch.Tensor:
        return torch.zeros(self.batch, self.kv_heads, capacity, self.head_dim, dtype=self.dtype, device=self.device)

    @property
    def capacity(self) -> int:
        return self.valid.shape[1]

    def view(self, rows: int, slots: int) -> "KVCache":
        """A batch cache on this one's storage: its first ``rows`` rows and ``slots`` slots.

        Writes through the view (keys, values, ``valid``, in-place ``next_position``) land in
        this cache's buffers; the view has its own cursor (at 0) and no static slot. It must
        not ``reserve`` (growing would detach it).
        """
        if not (0 < rows <= self.batch and 0 < slots <= self.capacity):
            raise ValueError(f"a view of {rows} x {slots} does not fit a cache of {self.batch} x {self.capacity}")
        view = copy.copy(self)  # every attribute, then the ones a view narrows
        view.batch = rows
        view.keys = [k[:rows, :, :slots] for k in self.keys]
        view.values = [v[:rows, :, :slots] for v in self.values]
        view.valid = self.valid[:rows, :slots]
        view.next_position = self.next_position[:rows]
        view.cursor = 0
        view.static_slot = None
        return view

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more slots after the cursor (grows by doubling)."""
        needed = self.cursor + extra
        if needed <= self.capacity:
            return
        new_capacity = max(needed, 2 * self.capacity)
        for store in (self.keys, self.values):
            for layer, old in enumerate(store):
                grown = self._empty(new_capacity)
                grown[:, :, : self.cursor] = old[:, :, : self.cursor]
                store[layer] = grown
        valid = torch.zeros(self.batch, new_capacity, dtype=torch.bool, device=self.device)
        valid[:, : self.cursor] = self.valid[:, : self.cursor]
        self.valid = valid

    def write(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store ``(batch, kv_heads, n, head_dim)`` new keys/values at the cursor.

        Returns all keys and values up to and including the new ones.
        """
        if self.static_slot is not None:
            self.keys[layer].index_copy_(2, self.static_slot, keys)
            self.values[layer].index_copy_(2, self.static_slot, values)
            return self.keys[layer], self.values[layer]
        n = keys.shape[2]
        end = self.cursor + n
        assert end <= self.capacity, "reserve() before writing"
        self.keys[layer][:, :, self.cursor : end] = keys
        self.values[layer][:, :, self.cursor : end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, valid: torch.Tensor) -> None:
        """Commit the slots just written by every layer; ``valid`` is ``(batch, n)`` bool."""
        n = valid.shape[1]
        self.valid[:, self.cursor : self.cursor + n] = valid
        self.next_position += valid.sum(dim=1)
        self.cursor += n

    def truncate(self, length: int) -> None:
        """Forget every slot from ``length`` on (keeps the first ``length``)."""
        if not 0 <= length <= self.cursor:
            raise ValueError(f"cannot truncate a cache of {self.cursor} slots to {length}")
        self.valid[:, length : self.cursor] = False
        # In place: a captured CUDA graph reads this very tensor.
        self.next_position.copy_(self.valid[:, :length].sum(dim=1))
        self.cursor = length

    def reset(self) -> None:
        """Empty the cache, keeping its buffers."""
        self.truncate(0)


class RowCache:
    """The cache of one sequence: fixed capacity, allocated once, no padding.

    Slot ``i`` holds position ``i``; ``length`` slots are filled. One storage of shape
    ``(n_layers, 2, 1, kv_heads, capacity, head_dim)`` holds every layer's keys and
    values, so :attr:`nbytes` is what this cache really allocated. A batched forward
    over several ``RowCache`` writes each row in place and attends over views of it:
    nothing is copied to form a batch.
    """

    def __init__(self, n_layers: int, kv_heads: int, head_dim: int, capacity: int, dtype: torch.dtype,
                 device: torch.device | str) -> None:
        self.storage = torch.empty(n_layers, 2, 1, kv_heads, capacity, head_dim, dtype=dtype, device=device)
        self.keys = [self.storage[layer, 0] for layer in range(n_layers)]  # (1, kv_heads, capacity, head_dim)
        self.values = [self.storage[layer, 1] for layer in range(n_layers)]
        self.length = 0

    @property
    def capacity(self) -> int:
        return self.storage.shape[4]

    @property
    def nbytes(self) -> int:
        """Bytes of the storage actually allocated (measured from the tensor)."""
        return self.storage.untyped_storage().nbytes()

    def truncate(self, length: int) -> None:
        """Forget every slot from ``length`` on."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} slots to {length}")
        self.length = length


def stack_rows(rows: list[RowCache], into: KVCache) -> KVCache:
    """Copy the filled slots of several row caches into a batch cache, right-aligned.

    Used only by the fixed-shape (CUDA graph) decode steps, whose captured buffers
    cannot point at each utterance's own cache. ``into`` keeps its extra rows empty.
    """
    longest = max(r.length for r in rows)
    if into.batch < len(rows) or into.capacity <= longest:
        raise ValueError("the batch cache is too small for these rows")
    into.valid.zero_()
    into.next_position.zero_()
    for row, cache in enumerate(rows):
        offset = longest - cache.length
        for layer in range(into.n_layers):
            into.keys[layer][row, :, offset:longest] = cache.keys[layer][0, :, : cache.length]
            into.values[layer][row, :, offset:longest] = cache.values[layer][0, :, : cache.length]
        into.valid[row, offset:longest] = True
        into.next_position[row] = cache.length
    into.cursor = longest
    return into
