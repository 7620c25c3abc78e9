"""How far do from-scratch BERT-BiLSTM models get on our text tasks on this CPU box?

Train on train, select on dev, report test; one job at a time. Examples:

    .venv/bin/python bench/text_models_probe.py --task pretrain-zh --profile small
    .venv/bin/python bench/text_models_probe.py --task intent --profile small --pretrained

`pretrain-zh` / `pretrain-en` build the tokenizer and masked-LM encoder from the train+dev texts of
every Chinese (resp. English) dataset in data/validated (test texts are left out, so test stays
unseen even as unlabelled text) and store them under run/text_models_probe/. Each task appends its
run to bench/results/text_models_probe_<task>.json and prints all runs of that task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.text.calibration import (  # noqa: E402
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
    tune_abstain_threshold,
)
from training.text.models import (  # noqa: E402
    BertBiLSTMClassifier,
    BertBiLSTMTagger,
    BiLSTMCRFTagger,
    EncoderParams,
    SiameseMatcher,
    build_mlm,
    load_encoder_weights,
)
from training.text.tokenizer import TokenizerParams, build_tokenizer, load_tokenizer  # noqa: E402
from training.text.train import (  # noqa: E402
    TrainParams,
    entity_f1,
    fit_classifier,
    fit_matcher,
    fit_tagger,
    predict_logits,
    predict_tags,
    pretrain_mlm,
)

DATA = REPO / "data" / "validated"
STORE = REPO / "run" / "text_models_probe"
RESULTS = REPO / "bench" / "results"

PROFILES = {
    "tiny": EncoderParams(hidden=64, layers=1, heads=2, intermediate=256, lstm_hidden=32),
    "small": EncoderParams(hidden=128, layers=2, heads=2, intermediate=512, lstm_hidden=64),
    "medium": EncoderParams(hidden=192, layers=3, heads=3, intermediate=768, lstm_hidden=96),
    "base": EncoderParams(hidden=256, layers=4, heads=4, intermediate=1024, lstm_hidden=128),
}
PROFILES = {name: replace(p, max_len=256) for name, p in PROFILES.items()}
CHINESE = {
    "smp2017_ecdt_task1": ["text"],
    "chnsenticorp": ["text"],
    "cluener2020": ["text"],
    "atec_question_matching": ["text_a", "text_b"],
}
ENGLISH = {"banking77": ["text"]}
TASKS = {  # task -> dataset, language, max_len (tokens), default lr
    "intent": ("smp2017_ecdt_task1", "zh", 64),
    "sentiment": ("chnsenticorp", "zh", 256),
    "banking": ("banking77", "en", 96),
    "ner": ("cluener2020", "zh", 64),
    "matching": ("atec_question_matching", "zh", 64),
}


def corpus(datasets: dict[str, list[str]], include_test: bool) -> list[str]:
    texts: list[str] = []
    for name, columns in datasets.items():
        frame = pd.read_parquet(DATA / f"{name}.parquet")
        if not include_test:
            frame = frame[frame.split != "test"]
        for column in columns:
            texts += frame[column].astype(str).str.lstrip("\ufeff").tolist()
    return list(dict.fromkeys(texts))  # ATEC repeats questions: each distinct text once


def tokenizer_for(lang: str, include_test: bool = False):
    directory = STORE / f"tokenizer-{lang}"
    if (directory / "vocab.txt").exists():
        return load_tokenizer(directory)
    texts = corpus(CHINESE if lang == "zh" else ENGLISH, include_test)
    size = 8000 if lang == "zh" else 6000
    return build_tokenizer(texts, directory, TokenizerParams(vocab_size=size, min_frequency=2))


def latency_p50_ms(call, samples: list, repeats: int = 200) -> float:
    timings = []
    for i in range(repeats):
        item = samples[i % len(samples)]
        start = time.perf_counter()
        call(item)
        timings.append(1000 * (time.perf_counter() - start))
    return round(statistics.median(timings), 3)


def run_pretrain(args, lang: str) -> dict:
    tokenizer = tokenizer_for(lang, args.include_test)
    texts = corpus(CHINESE if lang == "zh" else ENGLISH, args.include_test)
    rng = np.random.default_rng(args.seed)
    held = rng.random(len(texts)) < 0.02
    train = [t for t, h in zip(texts, held, strict=True) if not h]
    dev = [t for t, h in zip(texts, held, strict=True) if h]
    encoder = PROFILES[args.profile]
    mlm = build_mlm(encoder, len(tokenizer))
    params = train_params(args, default_lr=1e-3, default_epochs=40, patience=100)
    result = pretrain_mlm(mlm, tokenizer, train, dev, args.max_len or 128, params, log_epoch)
    directory = STORE / f"mlm-{lang}-{args.profile}{args.tag}"
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(mlm.state_dict(), directory / "mlm.pt")
    (directory / "encoder.json").write_text(json.dumps(asdict(encoder)))
    return {
        "texts": len(train),
        "dev_texts": len(dev),
        "first_dev_mlm_loss": result.history[0]["dev_mlm_loss"],
        "best_dev_mlm_loss": result.best_metric,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped": result.stopped,
        "train_seconds": round(result.seconds, 1),
        "history": result.history,
        "saved": str(directory.relative_to(REPO)),
    }


def train_params(args, default_lr: float, default_epochs: int, patience: int) -> TrainParams:
    return TrainParams(
        epochs=args.epochs or default_epochs,
        batch_size=args.batch_size,
        lr=args.lr or default_lr,
        warmup_ratio=args.warmup,
        patience=patience,
        seed=args.seed,
        max_minutes=args.max_minutes,
    )


def log_epoch(epoch: int, metrics: dict[str, float]) -> None:
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
    print(f"  epoch {epoch}: {shown}", flush=True)


def maybe_pretrained(model, args, lang: str) -> str:
    if not args.pretrained:
        return "none"
    directory = STORE / f"mlm-{lang}-{args.profile}{args.pretrained_tag}"
    saved = EncoderParams(**json.loads((directory / "encoder.json").read_text()))
    shape = ("hidden", "layers", "heads", "intermediate", "max_len")
    if any(getattr(saved, k) != getattr(PROFILES[args.profile], k) for k in shape):
        raise SystemExit(f"{directory} was pretrained with {saved}")
    mlm = build_mlm(saved, model.encoder.bert.config.vocab_size)
    mlm.load_state_dict(torch.load(directory / "mlm.pt"))
    load_encoder_weights(model, mlm)
    return str(directory.relative_to(REPO))


def encoder_params(args) -> EncoderParams:
    encoder = PROFILES[args.profile]
    if args.no_lstm:
        encoder = replace(encoder, lstm_hidden=0)
    if args.dropout is not None:
        encoder = replace(encoder, dropout=args.dropout)
    return encoder


def run_classifier(args, task: str) -> dict:
    dataset, lang, max_len = TASKS[task]
    max_len = args.max_len or max_len
    frame = pd.read_parquet(DATA / f"{dataset}.parquet")
    split = {name: frame[frame.split == name] for name in ("train", "dev", "test")}
    labels = sorted(split["train"].label.unique())
    index = {label: i for i, label in enumerate(labels)}
    y = {name: part.label.map(index).to_numpy() for name, part in split.items()}
    x = {name: part.text.astype(str).tolist() for name, part in split.items()}
    tokenizer = tokenizer_for(lang)
    model = BertBiLSTMClassifier(encoder_params(args), len(tokenizer), len(labels))
    source = maybe_pretrained(model, args, lang)
    params = train_params(args, default_lr=5e-4, default_epochs=30, patience=args.patience)
    result = fit_classifier(
        model, tokenizer, x["train"], y["train"], x["dev"], y["dev"], max_len, params, log_epoch
    )
    dev_logits = predict_logits(model, tokenizer, x["dev"], max_len)
    test_logits = predict_logits(model, tokenizer, x["test"], max_len)
    temperature = fit_temperature(dev_logits, y["dev"])
    threshold = tune_abstain_threshold(softmax(dev_logits, temperature), y["dev"], 0.97)
    test_probs = softmax(test_logits, temperature)
    accepted = test_probs.max(1) >= threshold.threshold
    predicted = test_logits.argmax(1)
    from sklearn.metrics import f1_score

    return {
        "pretrained": source,
        "dev_accuracy": round(result.best_metric, 4),
        "test_accuracy": round(float((predicted == y["test"]).mean()), 4),
        "test_macro_f1": round(float(f1_score(y["test"], predicted, average="macro")), 4),
        "temperature": round(temperature, 3),
        "test_nll_raw": round(nll(test_logits, y["test"]), 4),
        "test_nll_calibrated": round(nll(test_logits, y["test"], temperature), 4),
        "test_ece_raw": round(expected_calibration_error(softmax(test_logits), y["test"]), 4),
        "test_ece_calibrated": round(expected_calibration_error(test_probs, y["test"]), 4),
        "abstain_threshold_p97": round(threshold.threshold, 4),
        "test_coverage_p97": round(float(accepted.mean()), 4),
        "test_precision_accepted_p97": round(
            float((predicted[accepted] == y["test"][accepted]).mean()) if accepted.any() else 0, 4
        ),
        **fit_summary(result),
        "latency_p50_ms_single_text": latency_p50_ms(
            lambda text: predict_logits(model, tokenizer, [text], max_len), x["test"]
        ),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def fit_summary(result) -> dict:
    return {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped": result.stopped,
        "train_seconds": round(result.seconds, 1),
        "history": result.history,
    }


def run_tagger(args) -> dict:
    dataset, lang, max_len = TASKS["ner"]
    max_len = args.max_len or max_len
    frame = pd.read_parquet(DATA / f"{dataset}.parquet")
    split = {name: frame[frame.split == name] for name in ("train", "dev", "test")}
    tag_names = sorted({tag for tags in split["train"].tags for tag in tags})
    tag_names.remove("O")
    tag_names = ["O", *tag_names]
    index = {tag: i for i, tag in enumerate(tag_names)}
    words = {name: [list(t) for t in part.tokens] for name, part in split.items()}
    tags = {name: [list(t) for t in part.tags] for name, part in split.items()}
    tokenizer = tokenizer_for(lang)
    if args.model == "bilstm-crf":
        model = BiLSTMCRFTagger(
            len(tokenizer), len(tag_names), 128, 128, use_crf=not args.no_crf, tag_names=tag_names
        )
        source = "none"
    else:
        model = BertBiLSTMTagger(
            encoder_params(args),
            len(tokenizer),
            len(tag_names),
            use_crf=not args.no_crf,
            tag_names=tag_names,
        )
        source = maybe_pretrained(model, args, lang)
    params = train_params(args, default_lr=1e-3, default_epochs=30, patience=args.patience)
    train_ids = [[index[t] for t in row] for row in tags["train"]]
    result = fit_tagger(
        model,
        tokenizer,
        words["train"],
        train_ids,
        words["dev"],
        tags["dev"],
        tag_names,
        max_len,
        params,
        log_epoch,
    )
    predicted = predict_tags(model, tokenizer, words["test"], tag_names, max_len)
    from seqeval.metrics import classification_report

    aligned = all(len(p) == len(t) for p, t in zip(predicted, tags["test"], strict=True))
    return {
        "pretrained": source,
        "crf": not args.no_crf,
        "dev_entity_f1": round(result.best_metric, 4),
        "test_entity_f1": round(entity_f1(tags["test"], predicted), 4),
        "test_report": classification_report(tags["test"], predicted, output_dict=True, digits=4),
        "length_aligned": aligned,
        **fit_summary(result),
        "latency_p50_ms_single_text": latency_p50_ms(
            lambda w: predict_tags(model, tokenizer, [w], tag_names, max_len), words["test"]
        ),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run_matcher(args) -> dict:
    dataset, lang, max_len = TASKS["matching"]
    max_len = args.max_len or max_len
    frame = pd.read_parquet(DATA / f"{dataset}.parquet")
    for column in ("text_a", "text_b"):
        frame[column] = frame[column].astype(str).str.lstrip("\ufeff")
    split = {name: frame[frame.split == name] for name in ("train", "dev", "test")}
    pairs = {n: (p.text_a.tolist(), p.text_b.tolist()) for n, p in split.items()}
    y = {n: p.label.astype(int).to_numpy() for n, p in split.items()}
    tokenizer = tokenizer_for(lang)
    model = SiameseMatcher(encoder_params(args), len(tokenizer))
    source = maybe_pretrained(model, args, lang)
    params = train_params(args, default_lr=5e-4, default_epochs=20, patience=args.patience)
    result = fit_matcher(
        model,
        tokenizer,
        pairs["train"],
        y["train"],
        pairs["dev"],
        y["dev"],
        max_len,
        params,
        log_epoch,
    )
    from sklearn.metrics import f1_score

    dev_a, dev_b = pairs["dev"]
    test_a, test_b = pairs["test"]
    dev_probs = softmax(predict_logits(model, tokenizer, dev_a, max_len, dev_b))[:, 1]
    test_probs = softmax(predict_logits(model, tokenizer, test_a, max_len, test_b))[:, 1]
    # Decision threshold for the positive class, tuned on dev F1 (classes are 78/22).
    grid = np.linspace(0.05, 0.95, 91)
    best = max(grid, key=lambda t: f1_score(y["dev"], dev_probs >= t))
    both = list(zip(*pairs["test"], strict=True))
    return {
        "pretrained": source,
        "dev_f1_at_0.5": round(result.best_metric, 4),
        "test_accuracy_at_0.5": round(float(((test_probs >= 0.5) == y["test"]).mean()), 4),
        "test_f1_at_0.5": round(float(f1_score(y["test"], test_probs >= 0.5)), 4),
        "dev_tuned_threshold": round(float(best), 3),
        "test_accuracy_tuned": round(float(((test_probs >= best) == y["test"]).mean()), 4),
        "test_f1_tuned": round(float(f1_score(y["test"], test_probs >= best)), 4),
        "majority_accuracy": round(float(1 - y["test"].mean()), 4),
        **fit_summary(result),
        "latency_p50_ms_single_pair": latency_p50_ms(
            lambda p: predict_logits(model, tokenizer, [p[0]], max_len, [p[1]]), both
        ),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=[*TASKS, "pretrain-zh", "pretrain-en"])
    parser.add_argument("--profile", default="small", choices=list(PROFILES))
    parser.add_argument("--pretrained", action="store_true", help="start from the stored MLM")
    parser.add_argument("--pretrained-tag", default="", help="suffix of the stored MLM dir")
    parser.add_argument("--model", default="bert-bilstm", choices=["bert-bilstm", "bilstm-crf"])
    parser.add_argument("--no-crf", action="store_true", help="softmax tagger instead of CRF")
    parser.add_argument("--no-lstm", action="store_true", help="pool BERT states directly")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=0.1)
    parser.add_argument("--dropout", type=float)
    parser.add_argument("--patience", type=int, default=4)
    parser.add_argument("--max-len", type=int)
    parser.add_argument("--max-minutes", type=float, default=18.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--include-test", action="store_true", help="pretrain on test text too")
    parser.add_argument("--tag", default="", help="suffix for this run's name")
    args = parser.parse_args()

    torch.set_num_threads(2)
    started = time.monotonic()
    if args.task.startswith("pretrain"):
        outcome = run_pretrain(args, args.task.split("-")[1])
    elif args.task == "ner":
        outcome = run_tagger(args)
    elif args.task == "matching":
        outcome = run_matcher(args)
    else:
        outcome = run_classifier(args, args.task)
    record = {
        "run": " ".join(sys.argv[1:]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "encoder": asdict(encoder_params(args)),
        "args": vars(args),
        **outcome,
    }
    path = RESULTS / f"text_models_probe_{args.task}.json"
    report = json.loads(path.read_text()) if path.exists() else {"benchmark": path.stem, "runs": []}
    report["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    report["runs"] = [r for r in report["runs"] if r["run"] != record["run"]] + [record]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=float) + "\n")
    print_table(report["runs"])


def print_table(runs: list[dict]) -> None:
    skip = {"history", "args", "encoder", "test_report", "measured_at"}
    keys = [k for k in runs[-1] if k not in skip and not isinstance(runs[-1][k], dict | list)]
    for run in runs:
        print("-" * 60)
        for key in keys:
            print(f"{key:32s} {run.get(key)}")


if __name__ == "__main__":
    main()
