"""Each head's fit: what it feeds the training loop (loop.py) and how dev scores it.

Sentence classifier, pair matcher, BIO tagger and masked-LM pretraining differ only in their
batches, loss and dev metric; the loop, the optimizer and early stopping are shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import BertForMaskedLM, BertTokenizerFast

from training.text.data import (
    Batch,
    Padding,
    chunk_texts,
    encode_tagged,
    encode_texts,
    ids_and_mask,
    mask_tokens,
    pair_batch,
    tag_batch,
    text_batch,
)
from training.text.loop import FitResult, OnEpoch, OnStep, TrainParams, train_loop
from training.text.predict import (
    binary_scores,
    entity_f1,
    forward,
    masked_lm_loss,
    mlm_loss,
    predict_logits,
    predict_tags,
)

DEFAULT_PARAMS = TrainParams()  # frozen: one shared default


def cross_entropy_loss(model: nn.Module, batch: Batch) -> Tensor:
    return nn.functional.cross_entropy(forward(model, batch), batch["labels"])


def tagger_loss(model: nn.Module, batch: Batch) -> Tensor:
    emissions = model(batch["input_ids"], batch["attention_mask"], batch["word_index"])
    return model.tagger.loss(emissions, batch["tags"], batch["word_mask"])


def fit_classifier(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    dev_texts: Sequence[str],
    dev_labels: Sequence[int],
    max_len: int,
    params: TrainParams = DEFAULT_PARAMS,
    on_epoch: OnEpoch | None = None,
    on_step: OnStep | None = None,
) -> FitResult:
    """Train a sentence classifier; keeps the weights of the epoch with the best dev accuracy."""
    ids = encode_texts(tokenizer, train_texts, max_len)
    labels = list(train_labels)
    dev_true = np.asarray(dev_labels)
    padding = Padding(params.pad_multiple, max_len)

    def evaluate(trained: nn.Module) -> dict[str, float]:
        logits = predict_logits(
            trained, tokenizer, dev_texts, max_len, pad_multiple=params.pad_multiple
        )
        dev_loss = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(dev_true))
        return {
            "dev_accuracy": float((logits.argmax(1) == dev_true).mean()),
            "dev_loss": float(dev_loss),
        }

    return train_loop(
        model,
        [len(row) for row in ids],
        lambda indices: text_batch(ids, indices, labels, padding),
        cross_entropy_loss,
        evaluate,
        "dev_accuracy",
        params,
        on_epoch,
        on_step=on_step,
    )


def fit_matcher(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    train_pairs: tuple[Sequence[str], Sequence[str]],
    train_labels: Sequence[int],
    dev_pairs: tuple[Sequence[str], Sequence[str]],
    dev_labels: Sequence[int],
    max_len: int,
    params: TrainParams = DEFAULT_PARAMS,
    on_epoch: OnEpoch | None = None,
    select_on: str = "f1",
    class_weights: Sequence[float] | None = None,
    on_step: OnStep | None = None,
) -> FitResult:
    """Train a pair matcher. Selects on positive-class F1 by default: ATEC is ~78% negatives,
    so accuracy rewards a model that rarely says "same question". `class_weights` weight the
    loss per class: without them a short run collapses to the majority class."""
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None

    def loss_fn(model: nn.Module, batch: Batch) -> Tensor:
        return nn.functional.cross_entropy(forward(model, batch), batch["labels"], weight=weight)

    ids_a = encode_texts(tokenizer, train_pairs[0], max_len)
    ids_b = encode_texts(tokenizer, train_pairs[1], max_len)
    labels = list(train_labels)
    dev_true = np.asarray(dev_labels)
    padding = Padding(params.pad_multiple, max_len)

    def evaluate(trained: nn.Module) -> dict[str, float]:
        a, b = dev_pairs
        logits = predict_logits(trained, tokenizer, a, max_len, b, pad_multiple=params.pad_multiple)
        scores = binary_scores(dev_true, logits.argmax(1))
        return {f"dev_{name}": value for name, value in scores.items()}

    return train_loop(
        model,
        [len(a) + len(b) for a, b in zip(ids_a, ids_b, strict=True)],
        lambda indices: pair_batch(ids_a, ids_b, indices, labels, padding),
        loss_fn,
        evaluate,
        f"dev_{select_on}",
        params,
        on_epoch,
        on_step=on_step,
    )


def fit_tagger(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    train_words: Sequence[Sequence[str]],
    train_tags: Sequence[Sequence[int]],
    dev_words: Sequence[Sequence[str]],
    dev_tags: Sequence[Sequence[str]],
    tag_names: Sequence[str],
    max_len: int,
    params: TrainParams = DEFAULT_PARAMS,
    on_epoch: OnEpoch | None = None,
    on_step: OnStep | None = None,
) -> FitResult:
    """Train a BIO tagger (`model.tagger` is a SequenceTagger); selects on dev entity F1."""
    ids, starts = encode_tagged(tokenizer, train_words, max_len)
    tags = [list(row) for row in train_tags]
    dev_true = [list(row) for row in dev_tags]
    padding = Padding(params.pad_multiple, max_len)

    def evaluate(trained: nn.Module) -> dict[str, float]:
        predicted = predict_tags(
            trained, tokenizer, dev_words, tag_names, max_len, pad_multiple=params.pad_multiple
        )
        return {"dev_f1": entity_f1(dev_true, predicted)}

    return train_loop(
        model,
        [len(row) for row in ids],
        lambda indices: tag_batch(ids, starts, indices, tags, padding),
        tagger_loss,
        evaluate,
        "dev_f1",
        params,
        on_epoch,
        on_step=on_step,
    )


def pretrain_mlm(
    mlm: BertForMaskedLM,
    tokenizer: BertTokenizerFast,
    texts: Sequence[str],
    dev_texts: Sequence[str],
    max_len: int,
    params: TrainParams = DEFAULT_PARAMS,
    on_epoch: OnEpoch | None = None,
    probability: float = 0.15,
    on_step: OnStep | None = None,
) -> FitResult:
    """Masked-LM pretraining on unlabelled text; keeps the epoch with the lowest held-out loss.

    Masks are redrawn for every batch (dynamic masking, as RoBERTa), so repeated epochs over a
    small corpus still show new targets.
    """
    chunks = chunk_texts(tokenizer, texts, max_len)
    dev_chunks = chunk_texts(tokenizer, dev_texts, max_len)
    generator = torch.Generator().manual_seed(params.seed)
    padding = Padding(params.pad_multiple, max_len)

    def collate(indices: list[int]) -> Batch:
        input_ids, mask = ids_and_mask([chunks[i] for i in indices], padding)
        masked, labels = mask_tokens(input_ids, tokenizer, probability, generator)
        return {"input_ids": masked, "attention_mask": mask, "labels": labels}

    def evaluate(model: nn.Module) -> dict[str, Any]:
        loss = mlm_loss(model, tokenizer, dev_chunks, probability, pad_multiple=params.pad_multiple)
        return {"dev_mlm_loss": loss}

    return train_loop(
        mlm,
        [len(c) for c in chunks],
        collate,
        masked_lm_loss,
        evaluate,
        "dev_mlm_loss",
        params,
        on_epoch,
        higher_is_better=False,
        on_step=on_step,
    )
