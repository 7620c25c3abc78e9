"""One plain torch training loop for every head: AdamW, linear warmup, early stopping, a budget.

The loop returns a per-epoch history instead of logging it, and calls `on_epoch(epoch, metrics)`
after each epoch: the caller decides where metrics go (MLflow) and whether to stop early (an
Optuna pruner raises `TrialPruned` from the callback, which propagates out of `fit_*`).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from transformers import BertForMaskedLM, BertTokenizerFast

from training.text.calibration import softmax
from training.text.tokenizer import encode_words

OnEpoch = Callable[[int, dict[str, float]], None]
Batch = dict[str, Tensor]


@dataclass(frozen=True)
class TrainParams:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    patience: int = 3  # epochs without dev improvement before stopping
    seed: int = 42
    max_minutes: float = 20.0  # wall budget: training stops mid-epoch when it is spent
    max_grad_norm: float = 1.0
    # Batches are drawn from pools of this many batches sorted by length: little padding,
    # yet still shuffled across epochs.
    bucket_batches: int = 50
    # Batch widths are rounded up to a multiple of this (capped at the model's max_len): torch
    # builds CPU kernels per new input shape, and length buckets otherwise make dozens of them.
    pad_multiple: int = 16


@dataclass
class FitResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_metric: float = float("nan")
    seconds: float = 0.0
    stopped: str = "epochs"  # epochs | patience | budget


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _pad(rows: Sequence[Sequence[int]], value: int = 0, padding: Padding = NO_PADDING) -> Tensor:
    width = padding.width(max(len(row) for row in rows))
    return torch.tensor([list(row) + [value] * (width - len(row)) for row in rows])


def _ids_and_mask(
    rows: Sequence[Sequence[int]], padding: Padding = NO_PADDING
) -> tuple[Tensor, Tensor]:
    ids = _pad(rows, padding=padding)
    return ids, (ids != 0).long()


def _buckets(
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


# --- the loop -----------------------------------------------------------------------------------


def _optimizer(model: nn.Module, params: TrainParams, steps: int):
    """AdamW without decay on biases and LayerNorm weights, linear warmup then linear decay."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim < 2 or "LayerNorm" in name else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": params.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=params.lr,
    )
    warmup = max(1, int(params.warmup_ratio * steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _fit(
    model: nn.Module,
    lengths: Sequence[int],
    collate: Callable[[list[int]], Batch],
    loss_fn: Callable[[nn.Module, Batch], Tensor],
    evaluate: Callable[[nn.Module], dict[str, float]],
    metric: str,
    params: TrainParams,
    on_epoch: OnEpoch | None,
    higher_is_better: bool = True,
) -> FitResult:
    seed_everything(params.seed)
    rng = random.Random(params.seed)
    steps = params.epochs * math.ceil(len(lengths) / params.batch_size)
    optimizer, scheduler = _optimizer(model, params, steps)
    result, best_state, stale = FitResult(), None, 0
    sign = 1.0 if higher_is_better else -1.0
    start = time.monotonic()
    deadline = start + 60.0 * params.max_minutes
    for epoch in range(1, params.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for indices in _buckets(lengths, params.batch_size, params.bucket_batches, rng):
            loss = loss_fn(model, collate(indices))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
            optimizer.step()
            scheduler.step()
            total, count = total + loss.item() * len(indices), count + len(indices)
            if time.monotonic() > deadline:
                result.stopped = "budget"
                break
        model.eval()
        with torch.inference_mode():
            metrics = {"train_loss": total / max(count, 1), **evaluate(model)}
        metrics["seconds"] = time.monotonic() - start
        result.history.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if best_state is None or sign * metrics[metric] > sign * result.best_metric:
            result.best_epoch, result.best_metric, stale = epoch, metrics[metric], 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if result.stopped == "budget":
            break
        if stale >= params.patience:
            result.stopped = "patience"
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.monotonic() - start
    return result


# --- classifiers --------------------------------------------------------------------------------


def predict_logits(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    texts: Sequence[str],
    max_len: int,
    texts_b: Sequence[str] | None = None,
    batch_size: int = 64,
    pad_multiple: int = TrainParams.pad_multiple,
) -> np.ndarray:
    """Raw logits for texts (classifier) or text pairs (matcher), in input order."""
    padding = Padding(pad_multiple, max_len)
    ids_a = encode_texts(tokenizer, texts, max_len)
    ids_b = encode_texts(tokenizer, texts_b, max_len) if texts_b is not None else None
    lengths = [len(r) + (len(ids_b[i]) if ids_b else 0) for i, r in enumerate(ids_a)]
    out = np.zeros((len(ids_a), 0), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for indices in _buckets(lengths, batch_size, 1, None):
            if ids_b:
                batch = _pair_batch(ids_a, ids_b, indices, padding=padding)
            else:
                batch = _text_batch(ids_a, indices, padding=padding)
            logits = _forward(model, batch).float().numpy()
            if out.shape[1] == 0:
                out = np.zeros((len(ids_a), logits.shape[1]), dtype=np.float32)
            out[indices] = logits
    return out


def bagged_logits(
    models: Sequence[nn.Module], tokenizer: BertTokenizerFast, texts: Sequence[str], max_len: int
) -> np.ndarray:
    """Log of the members' average probability (one member: its own logits, unchanged).

    Averaging probabilities rather than logits keeps a member that is sure and wrong from
    outvoting the others by the size of its logits."""
    logits = [predict_logits(model, tokenizer, texts, max_len) for model in models]
    if len(logits) == 1:
        return logits[0]
    probabilities = np.mean([softmax(z) for z in logits], axis=0)
    return np.log(np.clip(probabilities, 1e-12, 1.0))


def predict_proba(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    texts: Sequence[str],
    max_len: int,
    texts_b: Sequence[str] | None = None,
    batch_size: int = 64,
    temperature: float = 1.0,
) -> np.ndarray:
    """Class probabilities; pass the fitted temperature (calibration.py) to calibrate them."""
    logits = predict_logits(model, tokenizer, texts, max_len, texts_b, batch_size)
    return torch.softmax(torch.from_numpy(logits) / temperature, dim=-1).numpy()


def _text_batch(
    ids: Sequence[Sequence[int]], indices: list[int], labels=None, padding: Padding = NO_PADDING
) -> Batch:
    input_ids, mask = _ids_and_mask([ids[i] for i in indices], padding)
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if labels is not None:
        batch["labels"] = torch.tensor([labels[i] for i in indices])
    return batch


def _pair_batch(ids_a, ids_b, indices: list[int], labels=None, padding=NO_PADDING) -> Batch:
    a, mask_a = _ids_and_mask([ids_a[i] for i in indices], padding)
    b, mask_b = _ids_and_mask([ids_b[i] for i in indices], padding)
    batch = {"ids_a": a, "mask_a": mask_a, "ids_b": b, "mask_b": mask_b}
    if labels is not None:
        batch["labels"] = torch.tensor([labels[i] for i in indices])
    return batch


def _forward(model: nn.Module, batch: Batch) -> Tensor:
    if "ids_a" in batch:
        return model(batch["ids_a"], batch["mask_a"], batch["ids_b"], batch["mask_b"])
    return model(batch["input_ids"], batch["attention_mask"])


def _cross_entropy(model: nn.Module, batch: Batch) -> Tensor:
    return nn.functional.cross_entropy(_forward(model, batch), batch["labels"])


def _classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    accuracy = float((y_true == y_pred).mean())
    tp = float(((y_pred == 1) & (y_true == 1)).sum())
    precision = tp / max(float((y_pred == 1).sum()), 1.0)
    recall = tp / max(float((y_true == 1).sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"accuracy": accuracy, "f1": f1}


def fit_classifier(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    dev_texts: Sequence[str],
    dev_labels: Sequence[int],
    max_len: int,
    params: TrainParams = TrainParams(),
    on_epoch: OnEpoch | None = None,
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

    return _fit(
        model,
        [len(row) for row in ids],
        lambda indices: _text_batch(ids, indices, labels, padding),
        _cross_entropy,
        evaluate,
        "dev_accuracy",
        params,
        on_epoch,
    )


def fit_matcher(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    train_pairs: tuple[Sequence[str], Sequence[str]],
    train_labels: Sequence[int],
    dev_pairs: tuple[Sequence[str], Sequence[str]],
    dev_labels: Sequence[int],
    max_len: int,
    params: TrainParams = TrainParams(),
    on_epoch: OnEpoch | None = None,
    select_on: str = "f1",
    class_weights: Sequence[float] | None = None,
) -> FitResult:
    """Train a pair matcher. Selects on positive-class F1 by default: ATEC is ~78% negatives,
    so accuracy rewards a model that rarely says "same question". `class_weights` weight the
    loss per class: without them a short run collapses to the majority class."""
    weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None

    def loss_fn(model: nn.Module, batch: Batch) -> Tensor:
        return nn.functional.cross_entropy(_forward(model, batch), batch["labels"], weight=weight)

    ids_a = encode_texts(tokenizer, train_pairs[0], max_len)
    ids_b = encode_texts(tokenizer, train_pairs[1], max_len)
    labels = list(train_labels)
    dev_true = np.asarray(dev_labels)
    padding = Padding(params.pad_multiple, max_len)

    def evaluate(trained: nn.Module) -> dict[str, float]:
        a, b = dev_pairs
        logits = predict_logits(trained, tokenizer, a, max_len, b, pad_multiple=params.pad_multiple)
        scores = _classification_scores(dev_true, logits.argmax(1))
        return {f"dev_{name}": value for name, value in scores.items()}

    return _fit(
        model,
        [len(a) + len(b) for a, b in zip(ids_a, ids_b, strict=True)],
        lambda indices: _pair_batch(ids_a, ids_b, indices, labels, padding),
        loss_fn,
        evaluate,
        f"dev_{select_on}",
        params,
        on_epoch,
    )


# --- taggers ------------------------------------------------------------------------------------


def _tag_batch(ids, starts, indices: list[int], tags=None, padding=NO_PADDING) -> Batch:
    input_ids, mask = _ids_and_mask([ids[i] for i in indices], padding)
    word_index = _pad([starts[i] for i in indices], padding=padding)
    word_mask = _pad([[1] * len(starts[i]) for i in indices], padding=padding)
    batch = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "word_index": word_index,
        "word_mask": word_mask,
    }
    if tags is not None:
        batch["tags"] = _pad([tags[i][: len(starts[i])] for i in indices], padding=padding)
    return batch


def _tagger_loss(model: nn.Module, batch: Batch) -> Tensor:
    emissions = model(batch["input_ids"], batch["attention_mask"], batch["word_index"])
    return model.tagger.loss(emissions, batch["tags"], batch["word_mask"])


def predict_tags(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    words: Sequence[Sequence[str]],
    tag_names: Sequence[str],
    max_len: int,
    batch_size: int = 64,
    outside: str = "O",
    pad_multiple: int = TrainParams.pad_multiple,
) -> list[list[str]]:
    """One tag per input word; words cut off by `max_len` are tagged `outside`."""
    padding = Padding(pad_multiple, max_len)
    ids, starts = encode_tagged(tokenizer, words, max_len)
    decoded: list[list[int]] = [[] for _ in ids]
    model.eval()
    with torch.inference_mode():
        for indices in _buckets([len(r) for r in ids], batch_size, 1, None):
            batch = _tag_batch(ids, starts, indices, padding=padding)
            emissions = model(batch["input_ids"], batch["attention_mask"], batch["word_index"])
            paths = model.tagger.decode(emissions, batch["word_mask"])
            for i, path in zip(indices, paths, strict=True):
                decoded[i] = path
    result = []
    for sentence, path in zip(words, decoded, strict=True):
        tags = [tag_names[t] for t in path][: len(sentence)]
        result.append(tags + [outside] * (len(sentence) - len(tags)))
    return result


def entity_f1(true_tags: list[list[str]], pred_tags: list[list[str]]) -> float:
    from seqeval.metrics import f1_score  # lazy: only taggers need seqeval

    return float(f1_score(true_tags, pred_tags))


def fit_tagger(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    train_words: Sequence[Sequence[str]],
    train_tags: Sequence[Sequence[int]],
    dev_words: Sequence[Sequence[str]],
    dev_tags: Sequence[Sequence[str]],
    tag_names: Sequence[str],
    max_len: int,
    params: TrainParams = TrainParams(),
    on_epoch: OnEpoch | None = None,
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

    return _fit(
        model,
        [len(row) for row in ids],
        lambda indices: _tag_batch(ids, starts, indices, tags, padding),
        _tagger_loss,
        evaluate,
        "dev_f1",
        params,
        on_epoch,
    )


# --- masked-LM pretraining ----------------------------------------------------------------------


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


def _masked_lm_loss(mlm: BertForMaskedLM, batch: Batch) -> Tensor:
    """Vocabulary logits for masked positions only: over all positions they dominate the cost."""
    states = mlm.bert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    targets = batch["labels"] != -100
    logits = mlm.cls(states.last_hidden_state[targets])
    return nn.functional.cross_entropy(logits, batch["labels"][targets])


def mlm_loss(
    mlm: BertForMaskedLM,
    tokenizer: BertTokenizerFast,
    chunks: Sequence[Sequence[int]],
    probability: float = 0.15,
    seed: int = 0,
    batch_size: int = 64,
    pad_multiple: int = TrainParams.pad_multiple,
) -> float:
    """Mean masked-LM loss with a fixed masking seed, so values are comparable across epochs."""
    generator = torch.Generator().manual_seed(seed)
    padding = Padding(pad_multiple, mlm.config.max_position_embeddings)
    total, count = 0.0, 0
    mlm.eval()
    with torch.inference_mode():
        for indices in _buckets([len(c) for c in chunks], batch_size, 1, None):
            input_ids, mask = _ids_and_mask([chunks[i] for i in indices], padding)
            masked, labels = mask_tokens(input_ids, tokenizer, probability, generator)
            n = int((labels != -100).sum())
            if n:
                batch = {"input_ids": masked, "attention_mask": mask, "labels": labels}
                loss = _masked_lm_loss(mlm, batch)
                total, count = total + float(loss) * n, count + n
    return total / max(count, 1)


def pretrain_mlm(
    mlm: BertForMaskedLM,
    tokenizer: BertTokenizerFast,
    texts: Sequence[str],
    dev_texts: Sequence[str],
    max_len: int,
    params: TrainParams = TrainParams(),
    on_epoch: OnEpoch | None = None,
    probability: float = 0.15,
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
        input_ids, mask = _ids_and_mask([chunks[i] for i in indices], padding)
        masked, labels = mask_tokens(input_ids, tokenizer, probability, generator)
        return {"input_ids": masked, "attention_mask": mask, "labels": labels}

    def loss_fn(model: nn.Module, batch: Batch) -> Tensor:
        return _masked_lm_loss(model, batch)

    def evaluate(model: nn.Module) -> dict[str, Any]:
        loss = mlm_loss(model, tokenizer, dev_chunks, probability, pad_multiple=params.pad_multiple)
        return {"dev_mlm_loss": loss}

    return _fit(
        mlm,
        [len(c) for c in chunks],
        collate,
        loss_fn,
        evaluate,
        "dev_mlm_loss",
        params,
        on_epoch,
        higher_is_better=False,
    )
