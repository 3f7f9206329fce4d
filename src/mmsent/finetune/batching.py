"""Mini-batch orders for fine-tuning: reproducible per (seed, epoch), grouped by length for texts."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on (seed, epoch), so a resumed run rebuilds the interrupted epoch's order."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def epoch_batches(rows: Sequence[int], batch_size: int, seed: int, epoch: int,
                  lengths: Sequence[int] | None = None) -> list[list[int]]:
    """Shuffled batches of ``rows`` for one epoch; with ``lengths`` (one per row index), similar lengths share one.

    Length grouping sorts within random chunks of 16 batches and then shuffles the batches (as Hugging Face's
    ``group_by_length`` does): tweets are short but a random batch usually holds one long text that the whole batch
    would be padded to.
    """
    rows_t = torch.as_tensor(list(rows), dtype=torch.long)
    gen = epoch_generator(seed, epoch)
    perm = rows_t[torch.randperm(len(rows_t), generator=gen)]
    if lengths is None:
        return [b.tolist() for b in perm.split(batch_size)]
    lengths_t = torch.as_tensor(list(lengths), dtype=torch.long)
    batches: list[torch.Tensor] = []
    for chunk in perm.split(16 * batch_size):
        order = torch.argsort(lengths_t[chunk], descending=True, stable=True)
        batches.extend(chunk[order].split(batch_size))
    return [batches[i].tolist() for i in torch.randperm(len(batches), generator=gen).tolist()]


def length_sorted_batches(rows: Sequence[int], batch_size: int, lengths: Sequence[int] | None = None
                          ) -> list[list[int]]:
    """Deterministic batches for evaluation, longest first where lengths are known."""
    rows = list(rows)
    if lengths is not None:
        rows.sort(key=lambda i: lengths[i], reverse=True)
    return [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
