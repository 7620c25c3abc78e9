"""Inference and dev-set scores: logits, probabilities, tags and masked-LM loss.

The training loop scores dev with these after every epoch, and the logged pyfuncs
(neural_text_model.py, ner_model.py, match_model.py) answer requests with the same functions,
so what was chosen on dev is exactly what serves.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn
from transformers import BertForMaskedLM, BertTokenizerFast

from training.text.calibration import softmax
from training.text.data import (
    DEFAULT_PAD_MULTIPLE,
    Batch,
    Padding,
    encode_tagged,
    encode_texts,
    ids_and_mask,
    length_buckets,
    mask_tokens,
    pair_batch,
    tag_batch,
    text_batch,
)


def forward(model: nn.Module, batch: Batch) -> Tensor:
    """Logits of a classifier or pair matcher for its batch."""
    if "ids_a" in batch:
        return model(batch["ids_a"], batch["mask_a"], batch["ids_b"], batch["mask_b"])
    return model(batch["input_ids"], batch["attention_mask"])


# --- classifiers and matchers -------------------------------------------------------------------


def predict_logits(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    texts: Sequence[str],
    max_len: int,
    texts_b: Sequence[str] | None = None,
    batch_size: int = 64,
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
) -> np.ndarray:
    """Raw logits for texts (classifier) or text pairs (matcher), in input order."""
    padding = Padding(pad_multiple, max_len)
    ids_a = encode_texts(tokenizer, texts, max_len)
    ids_b = encode_texts(tokenizer, texts_b, max_len) if texts_b is not None else None
    lengths = [len(r) + (len(ids_b[i]) if ids_b else 0) for i, r in enumerate(ids_a)]
    out = np.zeros((len(ids_a), 0), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for indices in length_buckets(lengths, batch_size, 1, None):
            if ids_b:
                batch = pair_batch(ids_a, ids_b, indices, padding=padding)
            else:
                batch = text_batch(ids_a, indices, padding=padding)
            logits = forward(model, batch).float().numpy()
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


def binary_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy and positive-class F1 of 0/1 predictions (a matcher's dev scores)."""
    accuracy = float((y_true == y_pred).mean())
    tp = float(((y_pred == 1) & (y_true == 1)).sum())
    precision = tp / max(float((y_pred == 1).sum()), 1.0)
    recall = tp / max(float((y_true == 1).sum()), 1.0)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    return {"accuracy": accuracy, "f1": f1}


# --- taggers ------------------------------------------------------------------------------------


def predict_tags(
    model: nn.Module,
    tokenizer: BertTokenizerFast,
    words: Sequence[Sequence[str]],
    tag_names: Sequence[str],
    max_len: int,
    batch_size: int = 64,
    outside: str = "O",
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
) -> list[list[str]]:
    """One tag per input word; words cut off by `max_len` are tagged `outside`."""
    padding = Padding(pad_multiple, max_len)
    ids, starts = encode_tagged(tokenizer, words, max_len)
    decoded: list[list[int]] = [[] for _ in ids]
    model.eval()
    with torch.inference_mode():
        for indices in length_buckets([len(r) for r in ids], batch_size, 1, None):
            batch = tag_batch(ids, starts, indices, padding=padding)
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
    """Entity-level F1 (seqeval): a span counts only with the right type and both ends."""
    from seqeval.metrics import f1_score  # lazy: only taggers need seqeval

    return float(f1_score(true_tags, pred_tags))


# --- masked LM ----------------------------------------------------------------------------------


def masked_lm_loss(mlm: BertForMaskedLM, batch: Batch) -> Tensor:
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
    pad_multiple: int = DEFAULT_PAD_MULTIPLE,
) -> float:
    """Mean masked-LM loss with a fixed masking seed, so values are comparable across epochs."""
    generator = torch.Generator().manual_seed(seed)
    padding = Padding(pad_multiple, mlm.config.max_position_embeddings)
    total, count = 0.0, 0
    mlm.eval()
    with torch.inference_mode():
        for indices in length_buckets([len(c) for c in chunks], batch_size, 1, None):
            input_ids, mask = ids_and_mask([chunks[i] for i in indices], padding)
            masked, labels = mask_tokens(input_ids, tokenizer, probability, generator)
            n = int((labels != -100).sum())
            if n:
                batch = {"input_ids": masked, "attention_mask": mask, "labels": labels}
                loss = masked_lm_loss(mlm, batch)
                total, count = total + float(loss) * n, count + n
    return total / max(count, 1)
