"""Fixes for what the data gate finds in a user's file, applied only when asked for.

`scrm data add` refuses a file whose texts sit in two splits, whose split column says
`validation`, whose texts repeat, or whose rarest class is too small to train on; its options
turn on the matching fix here. Each fix is recorded in the data set's spec (`repairs`), so every
later load (`scrm validate NAME`) replays it on the untouched file, and each returns what it
changed, so the data set's card and validation report can say so. Nothing here runs unless
the spec asks for it: the gate still decides.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from settings.platform import RepairSpec

SPLIT_ORDER = {"train": 0, "dev": 1, "test": 2}
KEYS = ("text", "text_a", "text_b")


def text_keys(frame: pd.DataFrame) -> list[str]:
    """The columns a duplicate is judged on: the text, or both questions of a pair."""
    return ["text"] if "text" in frame else [k for k in KEYS if k in frame]


def map_splits(frame: pd.DataFrame, mapping: dict[str, str]) -> tuple[pd.DataFrame, dict]:
    """Rename split values (validation -> dev); returns rows renamed per original name."""
    counts = frame["split"].value_counts()
    renamed = {old: int(counts.get(old, 0)) for old in mapping}
    return frame.assign(split=frame["split"].replace(mapping)), renamed


def drop_cross_split_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """A text (or either question of a pair) seen in an earlier split leaves the later one.

    Splits are taken train, dev, test: the earliest keeps the text, because a user's own data
    has no published test set to keep comparable, and train is where examples do most good.
    Returns the rows dropped per split.
    """
    keys = text_keys(frame)
    seen: set[str] = set()
    drop = pd.Series(False, index=frame.index)
    dropped: dict[str, int] = {}
    for split in SPLIT_ORDER:
        rows = frame["split"] == split
        hit = rows & frame[keys].isin(seen).any(axis=1)
        dropped[split] = int(hit.sum())
        drop |= hit
        for key in keys:
            seen.update(frame.loc[rows & ~hit, key])
    return frame[~drop].reset_index(drop=True), {k: v for k, v in dropped.items() if v}


def drop_duplicate_texts(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Every repeated text keeps its first row, the earliest split first (so this also
    removes cross-split repeats); returns how many rows went."""
    rank = frame["split"].map(SPLIT_ORDER).fillna(len(SPLIT_ORDER))
    ordered = frame.assign(_rank=rank).sort_values("_rank", kind="stable")
    kept = ordered.drop_duplicates(subset=text_keys(frame), keep="first").sort_index()
    return kept.drop(columns="_rank").reset_index(drop=True), len(frame) - len(kept)


def rare_classes(
    frame: pd.DataFrame, min_count: int, merge_into: str | None
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Classes with fewer than `min_count` train rows leave every split (a class the model
    cannot learn cannot be tested either), or are relabelled `merge_into`.

    Returns each rare class with its train row count.
    """
    train_counts = frame.loc[frame["split"] == "train", "label"].value_counts()
    counts = train_counts.reindex(frame["label"].unique(), fill_value=0)
    rare = {str(k): int(v) for k, v in counts.items() if v < min_count and k != merge_into}
    hit = frame["label"].isin(rare)
    if merge_into is None:
        return frame[~hit].reset_index(drop=True), rare
    return frame.assign(label=frame["label"].where(~hit, merge_into)), rare


def apply_repairs(frame: pd.DataFrame, spec: RepairSpec) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Apply the fixes `spec` asks for, in an order where each sees the previous one's rows:
    split names first (so dev is dev), duplicates next, then class counts on what is left."""
    done: dict[str, Any] = {}
    if spec.split_map:
        frame, done["split_map"] = map_splits(frame, spec.split_map)
    if spec.duplicate_texts:
        frame, done["duplicate_texts_dropped"] = drop_duplicate_texts(frame)
    if spec.cross_split_duplicates:
        frame, done["cross_split_duplicates_dropped"] = drop_cross_split_duplicates(frame)
    if spec.min_class_count and "label" in frame:
        frame, rare = rare_classes(frame, spec.min_class_count, spec.rare_merge_into)
        action = f"merged into {spec.rare_merge_into!r}" if spec.rare_merge_into else "dropped"
        done["rare_classes"] = {"min_train_rows": spec.min_class_count, action: rare}
    return frame, done


def describe(done: dict[str, Any]) -> list[str]:
    """One plain sentence per fix applied, for the data set's card."""
    lines = []
    if "split_map" in done:
        lines += [f"split {old!r} renamed: {n} rows" for old, n in done["split_map"].items()]
    if "duplicate_texts_dropped" in done:
        lines.append(f"repeated texts: {done['duplicate_texts_dropped']} rows dropped")
    if "cross_split_duplicates_dropped" in done:
        per_split = done["cross_split_duplicates_dropped"] or "none"
        lines.append(f"texts repeated across splits dropped from later splits: {per_split}")
    if rare := done.get("rare_classes"):
        minimum = rare["min_train_rows"]
        for action, classes in rare.items():
            if action != "min_train_rows":
                listed = ", ".join(f"{k} ({v})" for k, v in classes.items()) or "none"
                lines.append(f"classes under {minimum} train rows {action}: {listed}")
    return lines
