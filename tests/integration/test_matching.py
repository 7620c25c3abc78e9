"""faq_match pieces on real ATEC pairs: the overlap challenger and the siamese pyfunc bundle."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch

from tests.support import read_dataset
from training.match_model import QuestionMatcher, clean
from training.text.models import EncoderParams, SiameseMatcher
from training.text.tokenizer import TokenizerParams, build_tokenizer, save_tokenizer
from training.text.train import TrainParams, fit_matcher, predict_proba


def test_weighting_shifts_the_siamese_towards_positives_and_its_bundle_reloads(tmp_path) -> None:
    """Weighting the positive class (22% of ATEC) moves scores towards "same question" versus
    the same run unweighted (the earlier probe collapsed to "different"); the pyfunc bundle gives
    the trained model's scores."""
    frame = read_dataset("atec_question_matching")
    for column in ("text_a", "text_b"):
        frame[column] = frame[column].map(clean)
    train = frame[frame.split == "train"].head(600)
    dev = frame[frame.split == "dev"].head(200)
    texts = [*train.text_a, *train.text_b, *dev.text_a, *dev.text_b]
    tokenizer = build_tokenizer(texts, tmp_path / "tok", TokenizerParams(3000, 1))
    encoder = EncoderParams(
        hidden=32, layers=1, heads=2, intermediate=64, max_len=32, lstm_hidden=16
    )
    labels = train.label.astype(int)
    weight = float((labels == 0).sum() / (labels == 1).sum())

    def fitted(class_weights):
        torch.manual_seed(0)
        model = SiameseMatcher(encoder, len(tokenizer))
        fit_matcher(
            model,
            tokenizer,
            (train.text_a.tolist(), train.text_b.tolist()),
            labels.tolist(),
            (dev.text_a.tolist(), dev.text_b.tolist()),
            dev.label.astype(int).tolist(),
            32,
            TrainParams(epochs=2, lr=3e-3, batch_size=32),
            class_weights=class_weights,
        )
        a, b = dev.text_a.tolist(), dev.text_b.tolist()
        return model, predict_proba(model, tokenizer, a, 32, b)[:, 1]

    model, scores = fitted([1.0, weight])
    _, unweighted = fitted(None)
    assert scores.mean() > unweighted.mean() + 0.05
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    torch.save(model.state_dict(), bundle / "weights.pt")
    save_tokenizer(tokenizer, bundle)
    config = {"kind": "siamese", "encoder": encoder.__dict__, "max_len": 32, "threshold": 0.5}
    (bundle / "config.json").write_text(json.dumps(config))
    matcher = QuestionMatcher()
    matcher.load(bundle)
    out = matcher.predict(None, pd.DataFrame({"text_a": dev.text_a, "text_b": dev.text_b}))
    np.testing.assert_allclose(out["score"].to_numpy(), scores, rtol=1e-4, atol=1e-5)
    assert (out["label"].to_numpy() == (scores >= 0.5)).all()
