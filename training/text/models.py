"""BERT-BiLSTM heads for intent, sentiment, NER and question matching, plus a BiLSTM-CRF baseline.

The BERT encoder is built from a `BertConfig`, never downloaded: it starts random or from our own
masked-LM pretraining (`BertForMaskedLM` with the same config, see `load_encoder_weights`). The
BiLSTM on top adds a sequential bias that a small, briefly trained transformer lacks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchcrf import CRF
from transformers import BertConfig, BertForMaskedLM, BertModel


@dataclass(frozen=True)
class EncoderParams:
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 1024
    max_len: int = 128
    dropout: float = 0.1
    lstm_hidden: int = 128  # per direction; 0 skips the BiLSTM (plain BERT token states)

    def bert_config(self, vocab_size: int) -> BertConfig:
        return BertConfig(
            vocab_size=vocab_size,
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.intermediate,
            max_position_embeddings=self.max_len,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            pad_token_id=0,
        )


class BertBiLSTMEncoder(nn.Module):
    """Token states: BERT, then an optional BiLSTM over them (packed, so padding is never read)."""

    def __init__(self, params: EncoderParams, vocab_size: int) -> None:
        super().__init__()
        self.bert = BertModel(params.bert_config(vocab_size), add_pooling_layer=False)
        self.lstm = (
            nn.LSTM(params.hidden, params.lstm_hidden, batch_first=True, bidirectional=True)
            if params.lstm_hidden
            else None
        )
        self.dropout = nn.Dropout(params.dropout)
        self.output_size = 2 * params.lstm_hidden if params.lstm_hidden else params.hidden

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        states = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.lstm is not None:
            states = _run_lstm(self.lstm, states, attention_mask)
        return self.dropout(states)


def _run_lstm(lstm: nn.LSTM, states: Tensor, attention_mask: Tensor) -> Tensor:
    lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
    packed = nn.utils.rnn.pack_padded_sequence(
        states, lengths, batch_first=True, enforce_sorted=False
    )
    output, _ = lstm(packed)
    output, _ = nn.utils.rnn.pad_packed_sequence(
        output, batch_first=True, total_length=states.size(1)
    )
    return output


def masked_mean_max(states: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean and max over real tokens only: padding must not dilute the mean nor win the max."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    maximum = states.masked_fill(mask == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return torch.cat([mean, maximum], dim=-1)


class BertBiLSTMClassifier(nn.Module):
    """Sentence classifier (intent, sentiment): pooled BiLSTM states -> linear logits."""

    def __init__(self, params: EncoderParams, vocab_size: int, num_labels: int) -> None:
        super().__init__()
        self.encoder = BertBiLSTMEncoder(params, vocab_size)
        self.head = nn.Linear(2 * self.encoder.output_size, num_labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        states = self.encoder(input_ids, attention_mask)
        return self.head(masked_mean_max(states, attention_mask))


def forbid_invalid_bio(crf: CRF, tag_names: Sequence[str], penalty: float = -1e4) -> None:
    """Start the CRF with I-X reachable only from B-X or I-X (and never first).

    Gold paths never use these transitions and the partition gradient only pushes them lower, so
    the penalty survives training and Viterbi can only return well-formed BIO sequences.
    """
    with torch.no_grad():
        for j, tag in enumerate(tag_names):
            if not tag.startswith("I-"):
                continue
            crf.start_transitions[j] = penalty
            entity = tag[2:]
            for i, previous in enumerate(tag_names):
                if previous not in (f"B-{entity}", f"I-{entity}"):
                    crf.transitions[i, j] = penalty


class SequenceTagger(nn.Module):
    """Word-level emissions, then a CRF or independent softmax per word.

    Tokens are gathered at each word's first token (`word_index`), so the CRF sees one step per
    word with a left-aligned mask, whatever the tokenizer did inside words.
    """

    def __init__(
        self,
        feature_size: int,
        num_tags: int,
        use_crf: bool,
        tag_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.emit = nn.Linear(feature_size, num_tags)
        self.crf = CRF(num_tags, batch_first=True) if use_crf else None
        if self.crf is not None and tag_names is not None:
            forbid_invalid_bio(self.crf, tag_names)

    def emissions(self, states: Tensor, word_index: Tensor) -> Tensor:
        gathered = states.gather(1, word_index.unsqueeze(-1).expand(-1, -1, states.size(-1)))
        return self.emit(gathered)

    def loss(self, emissions: Tensor, tags: Tensor, word_mask: Tensor) -> Tensor:
        if self.crf is not None:
            return -self.crf(emissions, tags, mask=word_mask.bool(), reduction="mean")
        flat = emissions.reshape(-1, emissions.size(-1))
        target = tags.masked_fill(word_mask == 0, -100).reshape(-1)
        return nn.functional.cross_entropy(flat, target, ignore_index=-100)

    def decode(self, emissions: Tensor, word_mask: Tensor) -> list[list[int]]:
        if self.crf is not None:
            return self.crf.decode(emissions, mask=word_mask.bool())
        best = emissions.argmax(dim=-1)
        lengths = word_mask.sum(dim=1).tolist()
        return [row[:n].tolist() for row, n in zip(best, lengths, strict=True)]


class BertBiLSTMTagger(nn.Module):
    """NER: BERT -> BiLSTM -> emissions -> CRF (or softmax, `use_crf=False`)."""

    def __init__(
        self,
        params: EncoderParams,
        vocab_size: int,
        num_tags: int,
        use_crf: bool = True,
        tag_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.encoder = BertBiLSTMEncoder(params, vocab_size)
        self.tagger = SequenceTagger(self.encoder.output_size, num_tags, use_crf, tag_names)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, word_index: Tensor) -> Tensor:
        return self.tagger.emissions(self.encoder(input_ids, attention_mask), word_index)


class BiLSTMCRFTagger(nn.Module):
    """The classic NER baseline without BERT: embeddings -> BiLSTM -> CRF."""

    def __init__(
        self,
        vocab_size: int,
        num_tags: int,
        embedding: int = 128,
        lstm_hidden: int = 128,
        dropout: float = 0.1,
        use_crf: bool = True,
        tag_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding, padding_idx=0)
        self.lstm = nn.LSTM(embedding, lstm_hidden, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.tagger = SequenceTagger(2 * lstm_hidden, num_tags, use_crf, tag_names)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, word_index: Tensor) -> Tensor:
        states = _run_lstm(self.lstm, self.dropout(self.embed(input_ids)), attention_mask)
        return self.tagger.emissions(self.dropout(states), word_index)


class SiameseMatcher(nn.Module):
    """Question matching: one shared encoder for both questions, [u, v, |u-v|, u*v] -> 2 classes.

    Encoding each question alone (rather than the pair jointly) lets a serving path cache the
    vectors of known FAQ questions and match a new question against all of them in one pass.
    """

    def __init__(self, params: EncoderParams, vocab_size: int, head_hidden: int = 256) -> None:
        super().__init__()
        self.encoder = BertBiLSTMEncoder(params, vocab_size)
        size = 2 * self.encoder.output_size
        self.head = nn.Sequential(
            nn.Linear(4 * size, head_hidden),
            nn.GELU(),
            nn.Dropout(params.dropout),
            nn.Linear(head_hidden, 2),
        )

    def embed(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return masked_mean_max(self.encoder(input_ids, attention_mask), attention_mask)

    def forward(self, ids_a: Tensor, mask_a: Tensor, ids_b: Tensor, mask_b: Tensor) -> Tensor:
        u, v = self.embed(ids_a, mask_a), self.embed(ids_b, mask_b)
        return self.head(torch.cat([u, v, (u - v).abs(), u * v], dim=-1))


def build_mlm(params: EncoderParams, vocab_size: int) -> BertForMaskedLM:
    """The masked-LM twin of the encoder: same config, so its `bert` weights load 1:1."""
    return BertForMaskedLM(params.bert_config(vocab_size))


def load_encoder_weights(model: nn.Module, mlm: BertForMaskedLM) -> None:
    """Copy pretrained BERT weights into a head model's encoder; fails loudly on any mismatch."""
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, BertBiLSTMEncoder):
        raise TypeError(f"{type(model).__name__} has no BertBiLSTMEncoder to load into")
    encoder.bert.load_state_dict(mlm.bert.state_dict(), strict=True)
