"""From texts to tensors: token ids, padded widths, length buckets and the batches of each head.

Everything the training loop (loop.py) and inference (predict.py) feed a model goes through
here, so both see the same truncation, padding and masking.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import BertTokenizerFast

from training.text.tokenizer import encode_words

Batch = dict[str, Tensor]

# Batch widths are rounded up to a multiple of this (capped at the model's max_len): torch builds
# CPU kernels per new input shape, and length buckets otherwise make dozens of them.
DEFAULT_PAD_MULTIPLE = 16


# --- encoding -----------------------------------------------------------------------------------


def encode_texts(
    tokenizer: BertTokenizerFast, texts: Sequence[str], max_len: int
) -> list[list[int]]:
    """Token ids with [CLS]/[SEP]; long texts keep their head and tail.

    Reviews often state the verdict at the end, so cutting only the tail loses the signal that
    matters (head+tail truncation, Sun et al. 2019).
    """
    budget = max_len - 2
    head = budget // 3
    encoded = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
    result = []
    for ids in encoded["input_ids"]:
        if len(ids) > budget:
            ids = ids[:head] + ids[len(ids) - (budget - head) :]
        result.append([tokenizer.cls_token_id, *ids, tokenizer.sep_token_id])
    return result


def encode_tagged(
    tokenizer: BertTokenizerFast, words: Sequence[Sequence[str]], max_len: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and, per sentence, the position of each kept word's first token."""
    encoding = encode_words(tokenizer, words, max_len)
    ids, starts = [], []
    for i, row in enumerate(encoding["input_ids"]):
        previous, first = None, []
        for position, word_id in enumerate(encoding.word_ids(i)):
            if word_id is not None and word_id != previous:
                first.append(position)
            previous = word_id
        ids.append(row)
        starts.append(first or [0])
    return ids, starts


# --- padding and length buckets -----------------------------------------------------------------


@dataclass(frozen=True)
class Padding:
    """Round batch widths up to a multiple of `multiple`, never beyond `cap` (position
    embeddings); `multiple=1` pads to the longest row only."""

    multiple: int = 1
    cap: int | None = None

    def width(self, longest: int) -> int:
        width = -(-longest // self.multiple) * self.multiple
        return max(longest, min(width, self.cap)) if self.cap else width


NO_PADDING = Padding()


def pad_rows(
    rows: Sequence[Sequence[int]], value: int = 0, padding: Padding = NO_PADDING
) -> Tensor:
    """Rows of ids as one tensor, right-padded with `value` to the padding's width."""
    width = padding.width(max(len(row) for row in rows))
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])


def ids_and_mask(
    rows: Sequence[Sequence[int]], padding: Padding = NO_PADDING
) -> tuple[Tensor, Tensor]:
    """Padded ids and their attention mask (id 0 is [PAD])."""
    ids = pad_rows(rows, padding=padding)
    return ids, (ids != 0).long()


def length_buckets(
    lengths: Sequence[int], batch_size: int, bucket_batches: int, rng: random.Random | None
) -> Iterator[list[int]]:
    """Index batches of similar length. `rng=None`: deterministic order for evaluation."""
    order = list(range(len(lengths)))
    if rng is None:
        order.sort(key=lambda i: lengths[i])
        yield from (order[i : i + batch_size] for i in range(0, len(order), batch_size))
        return
    rng.shuffle(order)
    pool = batch_size * bucket_batches
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    yield from batches


# --- batches per head ---------------------------------------------------------------------------


def text_batch(
    ids: Sequence[Sequence[int]], indices: list[int], labels=None, padding: Padding = NO_PADDING
) -> Batch:
    """A sentence classifier's batch (with `labels` when training)."""
    input_ids, mask = ids_and_mask([ids[i] for i in indices], padding)
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if labels is not None:
        batch["labels"] = torch.tensor([labels[i] for i in indices])
    return batch


def pair_batch(ids_a, ids_b, indices: list[int], labels=None, padding=NO_PADDING) -> Batch:
    """A pair matcher's batch: both sides padded separately (the siamese towers)."""
    a, mask_a = ids_and_mask([ids_a[i] for i in indices], padding)
    b, mask_b = ids_and_mask([ids_b[i] for i in indices], padding)
    batch = {"ids_a": a, "mask_a": mask_a, "ids_b": b, "mask_b": mask_b}
    if labels is not None:
        batch["labels"] = torch.tensor([labels[i] for i in indices])
    return batch


def tag_batch(ids, starts, indices: list[int], tags=None, padding=NO_PADDING) -> Batch:
    """A tagger's batch: ids plus each word's first-token position and mask (and its tags)."""
    input_ids, mask = ids_and_mask([ids[i] for i in indices], padding)
    word_index = pad_rows([starts[i] for i in indices], padding=padding)
    word_mask = pad_rows([[1] * len(starts[i]) for i in indices], padding=padding)
    batch = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "word_index": word_index,
        "word_mask": word_mask,
    }
    if tags is not None:
        batch["tags"] = pad_rows([tags[i][: len(starts[i])] for i in indices], padding=padding)
    return batch


# --- masked-LM inputs ---------------------------------------------------------------------------


def chunk_texts(
    tokenizer: BertTokenizerFast, texts: Sequence[str], max_len: int
) -> list[list[int]]:
    """Pack texts into windows of up to `max_len` tokens, [SEP] between texts.

    Most of our texts are a dozen characters: one per sequence would spend pretraining on
    padding and [CLS]. Long texts are split across windows, so every token is read once.
    """
    width = max_len - 2
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    chunks, current = [], []
    encoded = tokenizer(list(texts), add_special_tokens=False, return_attention_mask=False)
    for ids in encoded["input_ids"]:
        if current and len(current) + 1 + len(ids) > width:
            chunks.append([cls, *current, sep])
            current = []
        while len(ids) > width:
            chunks.append([cls, *ids[:width], sep])
            ids = ids[width:]
        current = [*current, sep, *ids] if current else list(ids)
    if len(current) >= 2:
        chunks.append([cls, *current, sep])
    return chunks


def mask_tokens(
    input_ids: Tensor, tokenizer: BertTokenizerFast, probability: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """BERT's recipe: pick `probability` of real tokens; 80% -> [MASK], 10% random, 10% kept."""
    labels = input_ids.clone()
    special = input_ids <= max(tokenizer.all_special_ids)  # specials are the first vocab ids
    chosen = (torch.rand(input_ids.shape, generator=generator) < probability) & ~special
    if not chosen.any() and (~special).any():  # an all-ignored batch would make the loss NaN
        chosen.view(-1)[(~special).view(-1).nonzero()[0]] = True
    labels[~chosen] = -100
    masked = input_ids.clone()
    draw = torch.rand(input_ids.shape, generator=generator)
    masked[chosen & (draw < 0.8)] = tokenizer.mask_token_id
    randomised = chosen & (draw >= 0.8) & (draw < 0.9)
    random_ids = torch.randint(
        len(tokenizer.all_special_ids), len(tokenizer), input_ids.shape, generator=generator
    )
    masked[randomised] = random_ids[randomised]
    return masked, labels
