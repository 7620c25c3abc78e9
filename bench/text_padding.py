"""Epoch time of the BERT-BiLSTM with batch widths padded to the longest row vs to a multiple.

torch builds CPU kernels for every new input shape, and length-bucketed batches of reviews make
dozens of distinct widths, so the first epoch was 5-10x slower than the next ones in the full
runs (training/README.md). This trains the params.yaml encoder on a seeded sample of
ChnSentiCorp (lengths up to `max_len` 192, the widest spread of our tasks) for two epochs, once
per `pad_multiple`, each in a fresh interpreter (kernel caches are per process), and reports the
per-epoch wall and CPU seconds (CPU time of the process: on a shared machine the wall time
mostly measures the other jobs) and the number of distinct batch shapes:

    .venv/bin/python bench/text_padding.py [--rows 800] [--epochs 2] [--multiples 1 16]

`--steps N` instead runs N train steps on length-bucketed batches of real ChnSentiCorp lengths
twice over (pass 1 pays for each new shape, pass 2 reuses it) and writes
bench/results/text_padding_steps.json: short enough for a loaded machine.

Prints a table and writes bench/results/text_padding.json (with the load average: the machine
is shared, so compare rows of one run, not runs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results" / "text_padding.json"


def one_run(rows: int, epochs: int, multiple: int) -> dict:
    """Train in this process and return per-epoch seconds (run by the parent per multiple)."""
    import torch

    from pipelines.datasets import finalize, load_dataset
    from settings import load_settings
    from training.text import data as batching
    from training.text.fit import fit_classifier
    from training.text.loop import TrainParams
    from training.text.models import BertBiLSTMClassifier, EncoderParams
    from training.text.tokenizer import TokenizerParams, build_tokenizer

    torch.set_num_threads(2)
    settings = load_settings(REPO)
    spec = settings.dataset("chnsenticorp")
    frame = finalize(load_dataset(settings.raw_dir("chnsenticorp"), spec, settings.seed)[0], spec)
    train = frame[frame.split == "train"].sample(rows, random_state=0)
    dev = frame[frame.split == "dev"].sample(rows // 4, random_state=0)
    max_len = settings.text.task("sentiment").max_len
    texts = [*train.text, *dev.text]
    vocab_dir = Path(f"/tmp/text_padding_tok_{os.getpid()}")
    tokenizer = build_tokenizer(texts, vocab_dir, TokenizerParams())
    encoder = EncoderParams(**settings.text.bert.encoder.model_dump(), max_len=max_len)
    labels = {"negative": 0, "positive": 1}
    shapes: set[tuple[int, int]] = set()
    original = batching.ids_and_mask

    def counting(rows_, padding=batching.NO_PADDING):
        ids, mask = original(rows_, padding)
        shapes.add(tuple(ids.shape))
        return ids, mask

    batching.ids_and_mask = counting  # every batch of every head is built through it
    torch.manual_seed(0)
    model = BertBiLSTMClassifier(encoder, len(tokenizer), 2)
    params = TrainParams(epochs=epochs, patience=epochs, lr=1e-3, pad_multiple=multiple)
    real = sum(min(len(ids), max_len) for ids in tokenizer(list(train.text))["input_ids"])
    cpu = [time.process_time()]  # CPU seconds of this process (all torch threads)

    def on_epoch(epoch: int, metrics: dict) -> None:
        cpu.append(time.process_time())

    fit = fit_classifier(
        model, tokenizer, list(train.text), [labels[x] for x in train.label],
        list(dev.text), [labels[x] for x in dev.label], max_len, params, on_epoch,
    )  # fmt: skip
    cumulative = [h["seconds"] for h in fit.history]
    per_epoch = [round(b - a, 1) for a, b in zip([0.0, *cumulative], cumulative, strict=False)]
    return {
        "pad_multiple": multiple,
        "epoch_seconds": per_epoch,
        "epoch_cpu_seconds": [round(b - a, 1) for a, b in zip(cpu, cpu[1:], strict=False)],
        "distinct_shapes": len(shapes),
        "real_tokens_per_epoch": real,
        "dev_accuracy": [round(h["dev_accuracy"], 4) for h in fit.history],
    }


def step_run(batches: int, multiple: int) -> dict:
    """Train steps on `batches` length-bucketed batches of real ChnSentiCorp lengths, two passes
    over the same batches: pass 1 pays for every new shape, pass 2 reuses them."""
    import random

    import torch

    from pipelines.datasets import finalize, load_dataset
    from settings import load_settings
    from training.text import data as batching
    from training.text.models import BertBiLSTMClassifier, EncoderParams

    torch.set_num_threads(2)
    settings = load_settings(REPO)
    spec = settings.dataset("chnsenticorp")
    frame = finalize(load_dataset(settings.raw_dir("chnsenticorp"), spec, settings.seed)[0], spec)
    max_len = settings.text.task("sentiment").max_len
    lengths = [min(len(t) + 2, max_len) for t in frame[frame.split == "train"].text]
    order = list(batching.length_buckets(lengths, 32, 50, random.Random(0)))[:batches]
    padding = batching.Padding(multiple, max_len)
    rng = torch.Generator().manual_seed(0)
    data = []
    for indices in order:
        rows = [torch.randint(5, 6000, (lengths[i],), generator=rng).tolist() for i in indices]
        ids, mask = batching.ids_and_mask(rows, padding)
        data.append((ids, mask, torch.randint(0, 2, (len(rows),), generator=rng)))
    encoder = EncoderParams(**settings.text.bert.encoder.model_dump(), max_len=max_len)
    torch.manual_seed(0)
    model = BertBiLSTMClassifier(encoder, 6000, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    passes = []
    for _ in range(2):
        cpu, wall = time.process_time(), time.monotonic()
        for ids, mask, labels in data:
            loss = torch.nn.functional.cross_entropy(model(ids, mask), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        passes.append((round(time.process_time() - cpu, 1), round(time.monotonic() - wall, 1)))
    return {
        "pad_multiple": multiple,
        "batches": len(data),
        "distinct_shapes": len({tuple(ids.shape) for ids, _, _ in data}),
        "padded_tokens": sum(ids.numel() for ids, _, _ in data),
        "pass_cpu_seconds": [cpu for cpu, _ in passes],
        "pass_wall_seconds": [wall for _, wall in passes],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--steps", type=int, help="micro-benchmark: this many train steps")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        result = step_run(args.steps, args.child) if args.steps else None
        print(json.dumps(result or one_run(args.rows, args.epochs, args.child)))
        return
    if args.steps:
        return steps_table(args)
    runs = []
    for multiple in args.multiples:
        load = os.getloadavg()[0]
        started = time.monotonic()
        command = [sys.executable, __file__, "--rows", str(args.rows), "--epochs",
                   str(args.epochs), "--child", str(multiple)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result |= {"load_avg_start": load, "load_avg_end": os.getloadavg()[0]}
        result["wall_seconds"] = round(time.monotonic() - started, 1)
        runs.append(result)
    print(f"{'pad_multiple':>12} {'epoch wall s':>18} {'epoch CPU s':>18} {'shapes':>7} "
          f"{'load':>10} {'dev acc':>16}")  # fmt: skip
    for r in runs:
        epochs = " / ".join(f"{s:.1f}" for s in r["epoch_seconds"])
        cpu = " / ".join(f"{s:.1f}" for s in r["epoch_cpu_seconds"])
        load = f"{r['load_avg_start']:.1f}-{r['load_avg_end']:.1f}"
        accuracy = " / ".join(f"{a:.3f}" for a in r["dev_accuracy"])
        shapes = r["distinct_shapes"]
        row = f"{r['pad_multiple']:>12} {epochs:>18} {cpu:>18} {shapes:>7} {load:>10}"
        print(f"{row} {accuracy:>16}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": args.rows,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    RESULTS.write_text(json.dumps(payload, indent=2), encoding="utf-8")


def steps_table(args) -> None:
    runs = []
    for multiple in args.multiples:
        load = os.getloadavg()[0]
        command = [sys.executable, __file__, "--steps", str(args.steps), "--child", str(multiple)]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]) | {"load_avg": load})
    print(f"{'pad_multiple':>12} {'shapes':>7} {'padded tokens':>14} {'CPU s pass 1 / 2':>18} "
          f"{'wall s pass 1 / 2':>18} {'load':>5}")  # fmt: skip
    for r in runs:
        cpu = " / ".join(f"{v:.1f}" for v in r["pass_cpu_seconds"])
        wall = " / ".join(f"{v:.1f}" for v in r["pass_wall_seconds"])
        print(f"{r['pad_multiple']:>12} {r['distinct_shapes']:>7} {r['padded_tokens']:>14} "
              f"{cpu:>18} {wall:>18} {r['load_avg']:>5.1f}")  # fmt: skip
    out = RESULTS.with_name("text_padding_steps.json")
    payload = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "runs": runs}
    out.write_text(json.dumps(payload, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
