"""Tiny-profile checks of the neural text stack: tokenizer, heads, training loop, calibration.

Models are hidden 32 with one layer and train for a few seconds on a few hundred real rows:
the point is wiring (alignment, masks, shapes, weight loading), not accuracy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from transformers import BertTokenizerFast

from pipelines.datasets import finalize, load_dataset
from pipelines.text_families import BertFit, Member, bert_logits, ensemble, log_neural_classifier
from settings import load_settings
from tests.conftest import REPO
from training.text.calibration import (
    fit_temperature,
)
from training.text.models import (
    BertBiLSTMClassifier,
    BertBiLSTMTagger,
    BiLSTMCRFTagger,
    EncoderParams,
    SiameseMatcher,
    build_mlm,
    load_encoder_weights,
)
from training.text.tokenizer import (
    IGNORE_INDEX,
    TokenizerParams,
    align_labels,
    build_tokenizer,
    encode_words,
    load_tokenizer,
    save_tokenizer,
)
from training.text.train import (
    TrainParams,
    chunk_texts,
    fit_classifier,
    fit_matcher,
    fit_tagger,
    mlm_loss,
    predict_logits,
    predict_proba,
    predict_tags,
    pretrain_mlm,
)
from training.tfidf import ClassifierParams, TfidfParams, fit_tfidf_classifier, log_probabilities
from training.tracking import use_experiment

TINY = EncoderParams(hidden=32, layers=1, heads=2, intermediate=64, max_len=64, lstm_hidden=16)


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def read(name: str) -> pd.DataFrame:
    """The data set as the validate stage writes it, loaded from data/raw (works in a clean
    clone, where no pipeline has run)."""
    settings = load_settings(REPO)
    spec = settings.dataset(name)
    frame, _ = load_dataset(settings.raw_dir(name), spec, settings.seed)
    return finalize(frame, spec)


@pytest.fixture(scope="module")
def intent() -> pd.DataFrame:
    frame = read("smp2017_ecdt_task1")
    keep = ["weather", "music", "flight", "chat", "poetry"]
    frame = frame[frame.label.isin(keep) & frame.split.isin(["train", "dev"])]
    return frame.groupby(["split", "label"]).head(60)  # caps "chat": ~300 train, ~120 dev rows


@pytest.fixture(scope="module")
def ner() -> pd.DataFrame:
    return read("cluener2020").head(400)


@pytest.fixture(scope="module")
def atec() -> pd.DataFrame:
    frame = read("atec_question_matching")
    return pd.concat([frame[frame.label == "1"].head(150), frame[frame.label == "0"].head(150)])


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory, intent, ner, atec) -> BertTokenizerFast:
    texts = [*intent.text, *ner.text, *atec.text_a, *atec.text_b]
    return build_tokenizer(texts, tmp_path_factory.mktemp("tok"), TokenizerParams(4000, 1))


def test_vocab_loads_with_its_full_size(tokenizer: BertTokenizerFast, tmp_path: Path) -> None:
    path = save_tokenizer(tokenizer, tmp_path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(tokenizer) > 1000  # the vocab_file= trap loads 5 special tokens
    assert len(BertTokenizerFast(vocab=str(path))) == len(lines)
    assert len(BertTokenizerFast.from_pretrained(tmp_path)) == len(lines)
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    ids = tokenizer("明天北京天气怎么样")["input_ids"]
    assert len(ids) == 9 + 2 and tokenizer.unk_token_id not in ids


def test_chinese_tokenizes_per_character_and_tags_align(tokenizer, ner) -> None:
    assert tokenizer.tokenize("打开微信") == ["打", "开", "微", "信"]
    words = [list(tokens) for tokens in ner.tokens]
    encoding = encode_words(tokenizer, words, max_len=128)
    for i, (sentence, tags) in enumerate(zip(words, ner.tags, strict=True)):
        word_ids = encoding.word_ids(i)
        assert [w for w in word_ids if w is not None] == list(range(len(sentence)))
        aligned = align_labels(word_ids, list(range(len(tags))))
        assert [a for a in aligned if a != IGNORE_INDEX] == list(range(len(tags)))
    spaced = encode_words(tokenizer, [["a", " ", "中"]], max_len=16)
    assert [w for w in spaced.word_ids(0) if w is not None] == [0, 1, 2]


def fit_tiny(model, tokenizer, train, dev, index, params, on_epoch=None):
    """fit_classifier on a labelled train/dev frame pair at the tests' 32-token length."""
    return fit_classifier(
        model,
        tokenizer,
        train.text.tolist(),
        train.label.map(index).tolist(),
        dev.text.tolist(),
        dev.label.map(index).tolist(),
        max_len=32,
        params=params,
        on_epoch=on_epoch,
    )


def test_classifier_learns_a_real_subset_above_chance(tokenizer, intent) -> None:
    labels = sorted(intent.label.unique())
    index = {label: i for i, label in enumerate(labels)}
    train, dev = intent[intent.split == "train"], intent[intent.split == "dev"]
    model = BertBiLSTMClassifier(TINY, len(tokenizer), len(labels))
    seen = []
    result = fit_tiny(
        model,
        tokenizer,
        train,
        dev,
        index,
        TrainParams(epochs=4, lr=3e-3, batch_size=16, patience=4),
        on_epoch=lambda epoch, metrics: seen.append(epoch),
    )
    assert seen == [h["epoch"] for h in result.history] and len(seen) >= 1
    assert {"train_loss", "dev_accuracy", "dev_loss"} <= set(result.history[0])
    majority = dev.label.value_counts(normalize=True).iloc[0]
    assert result.best_metric > max(0.5, majority + 0.15)
    probs = predict_proba(model, tokenizer, dev.text.tolist(), max_len=32)
    assert probs.shape == (len(dev), len(labels))
    assert float((probs.argmax(1) == dev.label.map(index).to_numpy()).mean()) == pytest.approx(
        result.best_metric
    )


@pytest.mark.parametrize("kind", ["bert-crf", "bert-softmax", "bilstm-crf"])
def test_tagger_outputs_are_length_aligned_bio(tokenizer, ner, kind: str) -> None:
    tag_names = ["O", *sorted({t for tags in ner.tags for t in tags} - {"O"})]
    index = {tag: i for i, tag in enumerate(tag_names)}
    words = [list(tokens) for tokens in ner.tokens]
    tags = [list(t) for t in ner.tags]
    if kind == "bilstm-crf":
        model = BiLSTMCRFTagger(len(tokenizer), len(tag_names), 32, 16, tag_names=tag_names)
    else:
        model = BertBiLSTMTagger(
            TINY, len(tokenizer), len(tag_names), kind == "bert-crf", tag_names=tag_names
        )
    result = fit_tagger(
        model,
        tokenizer,
        words[:300],
        [[index[t] for t in row] for row in tags[:300]],
        words[300:],
        tags[300:],
        tag_names,
        max_len=64,
        params=TrainParams(epochs=1, lr=3e-3),
    )
    assert 0.0 <= result.best_metric <= 1.0
    predicted = predict_tags(model, tokenizer, words[300:], tag_names, max_len=24)
    assert [len(p) for p in predicted] == [len(w) for w in words[300:]]  # also past max_len
    assert {t for row in predicted for t in row} <= set(tag_names)
    if kind != "bert-softmax":  # the BIO-constrained CRF never starts an entity with I-
        for row in predicted:
            for previous, tag in zip(["O", *row], row, strict=False):
                if tag.startswith("I-"):
                    assert previous in (f"B-{tag[2:]}", tag)


def test_matcher_trains_and_outputs_probabilities(tokenizer, atec) -> None:
    train, dev = atec.iloc[::2], atec.iloc[1::2]
    model = SiameseMatcher(TINY, len(tokenizer), head_hidden=32)
    result = fit_matcher(
        model,
        tokenizer,
        (train.text_a.tolist(), train.text_b.tolist()),
        train.label.astype(int).tolist(),
        (dev.text_a.tolist(), dev.text_b.tolist()),
        dev.label.astype(int).tolist(),
        max_len=48,
        params=TrainParams(epochs=1, lr=1e-3),
    )
    assert {"dev_accuracy", "dev_f1"} <= set(result.history[0])
    probs = predict_proba(model, tokenizer, dev.text_a.tolist(), 48, texts_b=dev.text_b.tolist())
    assert probs.shape == (len(dev), 2)
    assert np.all((probs >= 0) & (probs <= 1)) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_mlm_pretraining_lowers_loss_and_loads_into_a_classifier(tokenizer, intent, ner) -> None:
    texts = [*intent.text, *ner.text]
    train, dev = texts[:-60], texts[-60:]
    mlm = build_mlm(TINY, len(tokenizer))
    dev_chunks = chunk_texts(tokenizer, dev, max_len=64)
    before = mlm_loss(mlm, tokenizer, dev_chunks)
    result = pretrain_mlm(
        mlm, tokenizer, train, dev, max_len=64, params=TrainParams(epochs=3, lr=3e-3, patience=3)
    )
    assert result.best_metric < before - 0.5
    assert mlm_loss(mlm, tokenizer, dev_chunks) == pytest.approx(result.best_metric)
    classifier = BertBiLSTMClassifier(TINY, len(tokenizer), num_labels=5)
    load_encoder_weights(classifier, mlm)
    for name, weight in mlm.bert.state_dict().items():
        assert torch.equal(classifier.encoder.bert.state_dict()[name], weight), name


def test_ensemble_pyfunc_loads_from_its_own_code_and_vocab(tokenizer, intent, tmp_path) -> None:
    """The logged model carries training/text as code and its vocab.txt: a fresh interpreter
    outside the repository (isolated mode, no PYTHONPATH) loads it and gives the same answers,
    with the calibrated ensemble of TF-IDF and two seed-bagged BERT-BiLSTMs the training step
    computed."""
    labels = sorted(intent.label.unique())
    index = {label: i for i, label in enumerate(labels)}
    train, dev = intent[intent.split == "train"], intent[intent.split == "dev"]
    models = []
    for seed in (0, 1):  # two seed-bagged members: the pyfunc must average them as training did
        model = BertBiLSTMClassifier(TINY, len(tokenizer), len(labels))
        params = TrainParams(epochs=2, lr=3e-3, batch_size=16, seed=seed)
        fit_tiny(model, tokenizer, train, dev, index, params)
        models.append(model)
    config = {"labels": labels, "encoder": TINY.__dict__, "max_len": 32, "lowercase": True}
    fit = BertFit(models, tokenizer, config | {"members": 2}, [], 0.0, "epochs")
    single = predict_logits(models[0], tokenizer, dev.text.tolist(), 32)
    assert not np.allclose(bert_logits(fit, dev.text.tolist()), single)  # both members count
    pipeline = fit_tfidf_classifier(train, TfidfParams(), ClassifierParams(), seed=0)
    texts = dev.text.tolist()
    dev_labels = dev.label.map(index).to_numpy()
    tfidf_member = Member(log_probabilities(pipeline, texts), log_probabilities(pipeline, texts))
    bert_member = Member(bert_logits(fit, texts), bert_logits(fit, texts))
    mixed, temperatures = ensemble(tfidf_member, bert_member, dev_labels)
    temperature = fit_temperature(mixed.dev, dev_labels)
    calibration = {"temperature": temperature, "threshold": 0.5, "unknown_label": "unknown"}
    calibration |= temperatures | {"family": "ensemble"}
    use_experiment(f"sqlite:///{tmp_path}/mlflow.db", "neural-test", tmp_path / "artifacts")
    with mlflow.start_run():
        info = log_neural_classifier(fit, calibration, pipeline, dev[["text"]].head(2))

    expected = np.exp(mixed.dev - mixed.dev.max(1, keepdims=True))
    expected = expected ** (1 / temperature)
    expected = (expected / expected.sum(1, keepdims=True)).max(1)
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri('sqlite:///{tmp_path}/mlflow.db')\n"
        f"model = mlflow.pyfunc.load_model('{info.model_uri}')\n"
        "import training\n"
        "out = model.predict(pd.DataFrame({'text': json.loads(sys.stdin.read())}))\n"
        "print(json.dumps({'code': training.__file__, 'out': out.to_dict('list')}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script],
        cwd=tmp_path,
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert "/artifacts/code/training/" in loaded["code"] and str(REPO) not in loaded["code"]
    out = loaded["out"]
    assert set(out) == {"label", "confidence", "top_label", "in_scope"}
    np.testing.assert_allclose(out["confidence"], expected, rtol=1e-4, atol=1e-5)
    assert [labels[i] for i in mixed.dev.argmax(1)] == out["top_label"]
    unknown = [c < 0.5 for c in out["confidence"]]
    assert [lab == "unknown" for lab in out["label"]] == unknown


def test_padding_to_a_multiple_changes_shapes_not_answers(tokenizer, intent, ner) -> None:
    """Widths rounded up to 16 (fewer distinct shapes for torch's kernels) must give the same
    logits and tags as padding to the longest row: masks keep the extra pads out."""
    from training.text.train import Padding, predict_logits

    assert [Padding(16, 64).width(n) for n in (1, 16, 17, 60)] == [16, 16, 32, 64]
    assert Padding(16, 40).width(35) == 40 and Padding().width(7) == 7
    torch.manual_seed(0)
    model = BertBiLSTMClassifier(TINY, len(tokenizer), 5).eval()
    texts = intent.text.tolist()[:80]
    exact = predict_logits(model, tokenizer, texts, 40, pad_multiple=1)
    padded = predict_logits(model, tokenizer, texts, 40, pad_multiple=16)
    np.testing.assert_allclose(padded, exact, atol=1e-4)
    tag_names = ["O", *sorted({t for tags in ner.tags for t in tags} - {"O"})]
    tagger = BertBiLSTMTagger(TINY, len(tokenizer), len(tag_names), True, tag_names).eval()
    words = [list(tokens) for tokens in ner.tokens[:60]]
    assert predict_tags(tagger, tokenizer, words, tag_names, 40, pad_multiple=1) == predict_tags(
        tagger, tokenizer, words, tag_names, 40, pad_multiple=16
    )


def test_ensemble_weight_follows_the_member_that_is_right_on_dev() -> None:
    """The BERT weight is tuned on dev log-loss: all on the member that is right, none on one
    that is uniform, and it is what the returned ensemble (and its params) use."""
    from pipelines.text_families import ensemble_weight

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    right = np.full((200, 4), 0.02)
    right[np.arange(200), labels] = 0.94
    uniform = np.full((200, 4), 0.25)
    assert ensemble_weight(uniform, right, labels, 20) == 1.0
    assert ensemble_weight(right, uniform, labels, 20) == 0.0
    half = right.copy()
    half[100:] = np.roll(right[100:], 1, axis=1)  # wrong, confidently, on half the rows
    assert 0.0 < ensemble_weight(uniform, half, labels, 20) < 1.0
    logits, flat = np.log(right), np.log(uniform)
    member, extra = ensemble(Member(flat, flat), Member(logits, logits), labels)
    assert extra["ensemble_weight"] == 1.0
    assert (member.dev.argmax(1) == labels).all()
