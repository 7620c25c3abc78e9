"""MLflow "model from code" for a masked-LM pretrained encoder (`text_encoder_<corpus>`).

The registered artifact of `scrm pretrain`: the bundle is the directory fine-tuning starts
from (`vocab.txt`, `config.json`, `mlm.pt`, see training/text/pretrained.py), and the pyfunc
answers a fill-mask query, which is how one inspects what the encoder learned: input `text`
with `[MASK]` tokens, output `filled` (each mask replaced by the most likely token) and
`top` (JSON: the `top_k` candidates per mask with their probabilities).
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

TOP_K = 5


class MaskedLanguageModel(PythonModel):
    def load_context(self, context) -> None:
        self.load(Path(context.artifacts["bundle"]))

    def load(self, bundle: Path) -> None:
        import torch

        from training.text.pretrained import load_pretrained

        torch.set_num_threads(2)
        self.encoder = load_pretrained(bundle)

    def fill(self, text: str) -> tuple[str, list[list[tuple[str, float]]]]:
        import torch

        tokenizer, mlm = self.encoder.tokenizer, self.encoder.mlm
        max_len = self.encoder.params.max_len
        ids = tokenizer(text, truncation=True, max_length=max_len)["input_ids"]
        with torch.inference_mode():
            logits = mlm(input_ids=torch.tensor([ids])).logits[0]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        top = []
        for position, token_id in enumerate(ids):
            if token_id != tokenizer.mask_token_id:
                continue
            probabilities = torch.softmax(logits[position], dim=-1)
            values, indices = probabilities.topk(TOP_K)
            candidates = tokenizer.convert_ids_to_tokens(indices.tolist())
            top.append([(t, round(float(p), 4)) for t, p in zip(candidates, values, strict=True)])
            tokens[position] = candidates[0]
        return tokenizer.convert_tokens_to_string(tokens[1:-1]), top

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        answers = [self.fill(text) for text in model_input["text"].astype(str)]
        return pd.DataFrame(
            {
                "filled": [filled for filled, _ in answers],
                "top": [json.dumps(top, ensure_ascii=False) for _, top in answers],
            }
        )


mlflow.models.set_model(MaskedLanguageModel())
