"""Save and load a masked-LM pretrained encoder, and start a head model from it.

`scrm pretrain CORPUS` writes one directory per corpus: `vocab.txt` (the tokenizer every model
initialised from it must use: the embedding rows are indexed by its ids), `config.json` (the
encoder size, including `max_len`, the number of position embeddings) and `mlm.pt` (the
`BertForMaskedLM` weights; its `bert` part is what fine-tuning copies). A fine-tuned model that
used a different tokenizer, or a different encoder size, would silently read garbage, so the
loader checks both.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.text.models import EncoderParams, build_mlm, load_encoder_weights
from training.text.tokenizer import load_tokenizer, save_tokenizer

WEIGHTS = "mlm.pt"
CONFIG = "config.json"


@dataclass
class PretrainedEncoder:
    """What fine-tuning starts from: tokenizer, encoder size and the masked-LM weights."""

    tokenizer: Any
    params: EncoderParams
    mlm: Any  # BertForMaskedLM
    info: dict[str, Any]

    def encoder_params(self, lstm_hidden: int, dropout: float) -> EncoderParams:
        """The pretrained BERT size with this head's BiLSTM size (the BiLSTM is not pretrained)."""
        return replace(self.params, lstm_hidden=lstm_hidden, dropout=dropout)

    def initialise(self, model: nn.Module) -> None:
        """Copy the pretrained BERT weights into `model.encoder.bert` (strict: sizes must match)."""
        load_encoder_weights(model, self.mlm)


def save_pretrained(
    directory: Path, mlm, tokenizer, params: EncoderParams, info: dict[str, Any]
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(mlm.state_dict(), directory / WEIGHTS)
    save_tokenizer(tokenizer, directory)
    config = {"encoder": asdict(params), "vocab_size": len(tokenizer), "info": info}
    (directory / CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return directory


def load_pretrained(directory: Path) -> PretrainedEncoder:
    """Load what `save_pretrained` wrote; raises FileNotFoundError naming the missing file."""
    directory = Path(directory)
    for name in (CONFIG, WEIGHTS, "vocab.txt"):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"No pretrained encoder in {directory}: {name} is missing")
    config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(directory)
    if len(tokenizer) != config["vocab_size"]:
        raise ValueError(f"{directory}: vocab.txt has {len(tokenizer)} tokens, weights expect "
                         f"{config['vocab_size']}")  # fmt: skip
    params = EncoderParams(**config["encoder"])
    mlm = build_mlm(params, len(tokenizer))
    mlm.load_state_dict(torch.load(directory / WEIGHTS, weights_only=True))
    mlm.eval()
    return PretrainedEncoder(tokenizer, params, mlm, config.get("info", {}))
