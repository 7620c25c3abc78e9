"""Seeded dev/test carving, so a data set without official splits still has frozen ones.

Stratified by label where possible; for question pairs, whole connected groups of questions go
to one split, otherwise the same question would sit in train and test (a leak GX would flag).
"""

from __future__ import annotations

import math

import pandas as pd
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from settings.platform import SplitSpec

# A text data set without a dev split lends this share of train to calibration, stratified
# (pipelines/text.py); scikit-learn's stratified split then needs >= 2 train rows per class and
# at least one row per class on each side, which the gate checks first (pipelines/validate.py).
CALIBRATION_SHARE = 0.15
STRATIFIED_MIN_PER_CLASS = 2


def calibration_shortfall(train_rows: int, classes: int) -> int:
    """How many rows per-class stratification lacks for the calibration split (0: none),
    the way scikit-learn sizes it (test rows rounded up)."""
    held_out = math.ceil(CALIBRATION_SHARE * train_rows)
    return max(0, classes - min(held_out, train_rows - held_out))


def pair_groups(text_a: pd.Series, text_b: pd.Series) -> pd.Series:
    """Connected components of the "appears in a pair with" graph (union-find)."""
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in zip(text_a, text_b, strict=True):
        parent[root(a)] = root(b)
    return text_a.map(root)


def _pick(rows: pd.Index, size: int, frame: pd.DataFrame, spec: SplitSpec, seed: int):
    if spec.group_pairs:
        groups = pair_groups(frame.loc[rows, "text_a"], frame.loc[rows, "text_b"])
        splitter = GroupShuffleSplit(n_splits=1, test_size=size / len(rows), random_state=seed)
        keep, picked = next(splitter.split(rows, groups=groups))
        return rows[picked], rows[keep]
    labels = frame.loc[rows, "label"] if spec.stratify and "label" in frame else None
    try:
        keep, picked = train_test_split(rows, test_size=size, stratify=labels, random_state=seed)
    except ValueError:  # a class too small to stratify: GX's rows-per-class check reports it
        keep, picked = train_test_split(rows, test_size=size, random_state=seed)
    return pd.Index(picked), pd.Index(keep)


def carve(frame: pd.DataFrame, spec: SplitSpec, seed: int) -> pd.DataFrame:
    frame = frame.copy()
    pool = frame.index[frame["split"] == spec.carve_from]
    remaining = pool
    for name, share in (("test", spec.test), ("dev", spec.dev)):
        size = round(share * len(pool))
        if size == 0 or len(remaining) <= size:
            continue
        picked, remaining = _pick(remaining, size, frame, spec, seed)
        frame.loc[picked, "split"] = name
    if spec.carve_from not in ("train", "dev", "test"):
        frame.loc[remaining, "split"] = "train"
    return frame


LEAK_KEYS = ("text", "text_a", "text_b")


def drop_leaks(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Remove from train (and dev) the texts that also sit in a later split.

    Test stays exactly as published, so scores remain comparable with the literature; what was
    dropped is counted and goes into the validation report.
    """
    keys = [c for c in LEAK_KEYS if c in frame]
    dropped: dict[str, int] = {}
    for split, later in (("dev", ["test"]), ("train", ["dev", "test"])):
        seen = set().union(*(set(frame.loc[frame["split"].isin(later), k]) for k in keys))
        leaked = (frame["split"] == split) & frame[keys].isin(seen).any(axis=1)
        dropped[split] = int(leaked.sum())
        frame = frame[~leaked]
    return frame.reset_index(drop=True), dropped
