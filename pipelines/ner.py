"""`scrm train|evaluate|promote ner`: entity extraction on CLUENER2020.

train:    tokenizer from train+dev text; a BERT-BiLSTM tagger per head of `text.ner.heads`
          (CRF, softmax) and the BiLSTM-CRF baseline without BERT; the one with the best dev
          entity F1 (seqeval) is logged as the `ner` pyfunc, which merges its spans with the
          pattern and gazetteer types of `extract_entities`. Every candidate's test F1 is
          reported beside it (never used to choose).
evaluate: the logged pyfunc, as serving loads it, on the frozen test split: entity-level
          P/R/F1 per type (seqeval report) from its `model_entities`.
promote:  register; `champion` moves on test entity F1 (same split, champion re-scored now).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from pipelines.io import read_json, write_json
from pipelines.progress import fit_bar
from pipelines.promotion import promote_evaluated
from pipelines.text import load_split, log_data
from pipelines.text_families import write_history
from privacy.masking import mask_for_logs, mask_payload
from settings import Settings
from settings.platform import BertTrainSettings
from training.text.spans import spans_bio
from training.tracking import use_experiment

NER_MODEL = Path(__file__).resolve().parents[1] / "training" / "ner_model.py"
# Behavioural check: the merged output keeps pattern types next to the learned ones.
PATTERN_PROBE = "请联系叶老桂，手机13812345678"
HISTORY_KEYS = ["model", "epoch", "train_loss", "dev_f1"]


def out_dir(settings: Settings) -> Path:
    return settings.model_dir(settings.text.ner.registered_model)


def eval_split(settings: Settings, split: str) -> pd.DataFrame:
    """dev or test, cut to `max_eval_rows` (tiny profile) the same way in every step."""
    frame = load_split(settings, settings.text.ner.dataset, split)
    rows = settings.text.ner.max_eval_rows
    return frame if rows is None else frame.head(rows)


def tag_names(train: pd.DataFrame) -> list[str]:
    return ["O", *sorted({tag for tags in train["tags"] for tag in tags} - {"O"})]


def candidates(
    settings: Settings, vocab: int, tags: list[str], encoder, pretrained=None
) -> dict[str, tuple[Any, dict]]:
    """name -> (untrained model, the pyfunc's config for it); BERT taggers start from the
    pretrained encoder when there is one (the BiLSTM-CRF baseline has no BERT to start)."""
    from training.text.models import BertBiLSTMTagger, BiLSTMCRFTagger

    ner = settings.text.ner
    models = {}
    for head in ner.heads:
        use_crf = head == "crf"
        model = BertBiLSTMTagger(encoder, vocab, len(tags), use_crf, tags)
        if pretrained is not None:
            pretrained.initialise(model)
        config = {"kind": "bert_bilstm", "use_crf": use_crf, "encoder": asdict(encoder)}
        models[f"bert_bilstm_{head}"] = (model, config)
    baseline = BiLSTMCRFTagger(
        vocab, len(tags), ner.baseline_embedding, ner.baseline_lstm_hidden, tag_names=tags
    )
    models["bilstm_crf"] = (
        baseline,
        {
            "kind": "bilstm_crf",
            "embedding": ner.baseline_embedding,
            "lstm_hidden": ner.baseline_lstm_hidden,
        },
    )
    return models


def train_params(train: BertTrainSettings, seed: int, pad_multiple: int):
    from training.text.loop import TrainParams

    return TrainParams(**train.model_dump(), seed=seed, pad_multiple=pad_multiple)


def seqeval_report(true: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    return {
        "f1": float(f1_score(true, predicted)),
        "precision": float(precision_score(true, predicted)),
        "recall": float(recall_score(true, predicted)),
        "per_type": classification_report(true, predicted, output_dict=True, zero_division=0),
    }


@dataclass(frozen=True)
class NerData:
    """The rows a NER run trains and scores on: characters as words, BIO tags per split."""

    rows: pd.DataFrame  # train, subsampled to `max_train_rows`
    dev: pd.DataFrame
    test: pd.DataFrame
    tags: list[str]
    words: dict[str, list[list[str]]]  # train / dev / test
    gold: dict[str, list[list[str]]]  # dev / test
    train_tags: list[list[int]]


def ner_data(settings: Settings) -> NerData:
    ner = settings.text.ner
    train = load_split(settings, ner.dataset, "train")
    dev, test = eval_split(settings, "dev"), eval_split(settings, "test")
    rows = (
        train
        if ner.max_train_rows is None
        else train.sample(min(ner.max_train_rows, len(train)), random_state=settings.seed)
    )
    tags = tag_names(train)
    index = {tag: i for i, tag in enumerate(tags)}
    words = {
        name: [list(t) for t in part["tokens"]]
        for name, part in {"train": rows, "dev": dev, "test": test}.items()
    }
    gold = {
        name: [list(t) for t in part["tags"]] for name, part in {"dev": dev, "test": test}.items()
    }
    train_tags = [[index[t] for t in row] for row in rows["tags"]]
    return NerData(rows, dev, test, tags, words, gold, train_tags)


def train_ner(settings: Settings) -> dict[str, Any]:
    """Every candidate tagger on train, the best dev entity F1 logged as the `ner` pyfunc."""
    import torch

    from pipelines.pretrain import start_encoder

    ner, bert = settings.text.ner, settings.text.bert
    torch.set_num_threads(bert.threads)
    data = ner_data(settings)
    use_experiment(settings.tracking_uri, ner.registered_model, settings.artifact_root)
    with mlflow.start_run(run_name="ner-taggers") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags({"task": "ner", "dataset": ner.dataset})
        log_data(settings, ner.dataset, data.rows)
        tokenizer, encoder, pretrained = start_encoder(
            settings, ner.corpus, [*data.rows["text"], *data.dev["text"]],
            Path(tmp) / "tokenizer", ner.max_len,
        )  # fmt: skip
        mlflow.log_params(
            {"seed": settings.seed, "train_rows": len(data.rows), "max_len": ner.max_len}
            | {f"bert_{k}": v for k, v in bert.encoder.model_dump().items()}
            | {f"train_{k}": v for k, v in ner.train.model_dump().items()}
            | {f"baseline_{k}": v for k, v in ner.baseline_train.model_dump().items()}
        )
        models = candidates(settings, len(tokenizer), data.tags, encoder, pretrained)
        reports = fit_candidates(settings, data, tokenizer, models)
        chosen = max(reports, key=lambda name: reports[name]["dev_f1"])
        mlflow.set_tag("model_family", chosen)
        mlflow.log_metric("dev_entity_f1", reports[chosen]["dev_f1"])
        info = log_tagger(settings, models[chosen], tokenizer, data, Path(tmp) / "bundle")
    result = {
        "run_id": run.info.run_id,
        "model_uri": info.model_uri,
        "model_name": ner.registered_model,
        "task": "ner",
        "dataset": ner.dataset,
        "model_family": chosen,
        "dev": {"entity_f1": reports[chosen]["dev_f1"]},
        "families": reports,
    }
    write_json(out_dir(settings) / "train.json", result)
    return result


def fit_candidates(
    settings: Settings, data: NerData, tokenizer, models: dict[str, tuple[Any, dict]]
) -> dict[str, dict[str, Any]]:
    """Train each candidate (a progress bar each), score it on dev and test, log its metrics
    and write the learning curves; returns name -> report."""
    from training.text.fit import fit_tagger
    from training.text.predict import predict_tags

    ner, bert = settings.text.ner, settings.text.bert
    reports: dict[str, dict] = {}
    curves: list[dict[str, Any]] = []
    for number, (name, (model, _)) in enumerate(models.items(), start=1):
        budget = ner.baseline_train if name == "bilstm_crf" else ner.train

        def on_epoch(epoch: int, metrics: dict[str, float], name: str = name) -> None:
            mlflow.log_metrics({f"{name}_{k}": v for k, v in metrics.items()}, step=epoch)

        with fit_bar(f"NER {name} {number}/{len(models)}") as on_step:
            fit = fit_tagger(
                model, tokenizer, data.words["train"], data.train_tags, data.words["dev"],
                data.gold["dev"], data.tags, ner.max_len,
                train_params(budget, settings.seed, bert.pad_multiple), on_epoch, on_step,
            )  # fmt: skip
        predicted = predict_tags(model, tokenizer, data.words["test"], data.tags, ner.max_len)
        test_report = seqeval_report(data.gold["test"], predicted)
        reports[name] = {
            "dev_f1": fit.best_metric,
            "test_f1": test_report["f1"],
            "test_precision": test_report["precision"],
            "test_recall": test_report["recall"],
            "seconds": round(fit.seconds, 1),
            "epochs": len(fit.history),
            "stopped": fit.stopped,
        }
        # Summary keys must not reuse the per-epoch names (dev_f1, seconds) of the series.
        summary = {"best_dev_f1": fit.best_metric, "train_seconds": fit.seconds}
        summary |= {f"test_{k}": test_report[k] for k in ("f1", "precision", "recall")}
        mlflow.log_metrics({f"{name}_{k}": v for k, v in summary.items()})
        curves += [{"model": name, **row} for row in fit.history]
    write_history(out_dir(settings) / "learning_curve.csv", curves, HISTORY_KEYS)
    return reports


def log_tagger(
    settings: Settings, chosen: tuple[Any, dict], tokenizer, data: NerData, bundle: Path
):
    """Write the chosen tagger's bundle (weights, vocab, config) and log it as the pyfunc."""
    import torch

    from training.ner_model import EntityTagger
    from training.text.export import log_pyfunc
    from training.text.tokenizer import save_tokenizer

    ner, bert = settings.text.ner, settings.text.bert
    model, config = chosen
    bundle.mkdir()
    torch.save(model.state_dict(), bundle / "weights.pt")
    save_tokenizer(tokenizer, bundle)
    config = config | {"tag_names": data.tags, "max_len": ner.max_len, "threads": bert.threads}
    (bundle / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    wrapper = EntityTagger()
    wrapper.load(bundle)
    # The input example is an MLflow artifact: masked like a log (it only shows the input
    # shape; evaluate_ner still runs the behaviour check on the raw probe).
    texts = [mask_for_logs(t) for t in (PATTERN_PROBE, data.dev["text"].iloc[0])]
    example = pd.DataFrame({"text": texts})
    return log_pyfunc(NER_MODEL, bundle, example, wrapper.predict(None, example))


def answer_spans(model, texts: list[str]) -> list[list[tuple[int, int, str]]]:
    answers = model.predict(pd.DataFrame({"text": texts}))
    return [
        [(e["start"], e["end"], e["type"]) for e in json.loads(row)]
        for row in answers["model_entities"]
    ]


def test_f1(settings: Settings, model_uri: str) -> dict[str, Any]:
    """Entity-level scores of a logged `ner` pyfunc on the frozen test split."""
    test = eval_split(settings, "test")
    model = mlflow.pyfunc.load_model(model_uri)
    texts = ["".join(tokens) for tokens in test["tokens"]]
    spans = answer_spans(model, texts)
    predicted = [spans_bio(len(t), s) for t, s in zip(test["tokens"], spans, strict=True)]
    return seqeval_report([list(t) for t in test["tags"]], predicted)


def evaluate_ner(settings: Settings) -> dict[str, Any]:
    trained = read_json(out_dir(settings) / "train.json")
    mlflow.set_tracking_uri(settings.tracking_uri)
    report = test_f1(settings, trained["model_uri"])
    model = mlflow.pyfunc.load_model(trained["model_uri"])
    probe = json.loads(model.predict(pd.DataFrame({"text": [PATTERN_PROBE]}))["entities"][0])
    sources = sorted({entity["source"] for entity in probe})
    problems = [] if "pattern" in sources else [f"no pattern entity in {PATTERN_PROBE!r}"]
    test = {k: report[k] for k in ("f1", "precision", "recall")}
    with mlflow.start_run(run_id=trained["run_id"]):
        mlflow.log_metrics({f"test_entity_{k}": v for k, v in test.items()})
        mlflow.log_dict(report["per_type"], "test_seqeval_report.json")
        behaviour = {"probe": PATTERN_PROBE, "entities": probe}
        mlflow.log_dict(mask_payload(behaviour, "standard"), "behaviour.json")  # an artifact
        mlflow.set_tag("behaviour", "failed" if problems else "passed")
    result = {
        **{k: trained[k] for k in ("run_id", "model_uri", "model_name", "task", "dataset")},
        "test": test,
        "per_type_f1": {k: v["f1-score"] for k, v in report["per_type"].items()},
        "behaviour": {"probe_sources": sources, "problems": problems},
    }
    write_json(out_dir(settings) / "evaluation.json", result)
    return result


def promote_ner(settings: Settings) -> dict[str, Any]:
    evaluation = read_json(out_dir(settings) / "evaluation.json")
    return promote_evaluated(
        settings,
        evaluation,
        name=evaluation["model_name"],
        dataset=evaluation["dataset"],
        metric="f1",
        candidate_score=evaluation["test"]["f1"],
        score_champion=lambda uri: test_f1(settings, uri)["f1"],
        out_file=out_dir(settings) / "promotion.json",
        blockers=[f"behaviour: {p}" for p in evaluation["behaviour"]["problems"]],
    )
