"""Knowledge tracing: predict a student's next answer from their answers so far (issue 27).

Three families on one student-level split, scored on every held-out answer:

- `SkillBaseline`: the skill's correct rate in training (what a gradebook knows);
- `PFA`: Performance Factors Analysis (Pavlik et al. 2009), a logistic regression on the
  skill and the student's prior successes and failures on that skill (log(1 + count));
- `DKT`: Deep Knowledge Tracing (Piech et al. 2015), an LSTM over (skill, correct) one-hots
  that outputs P(correct) for every skill at every step; it can carry ability across skills,
  which PFA's per-skill counts cannot.

Frames have columns student_id, skill (0..n_skills-1), correct (0/1) in answer order per
student, and split. The prior counts come from `features.education.prior_counts`, the same
function that writes the Feast source, so training and serving see the same features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score

from features.education import prior_counts


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "auc": round(float(roc_auc_score(y, p)), 4),
        "accuracy": round(float(accuracy_score(y, p >= 0.5)), 4),
        "rows": int(len(y)),
    }


class SkillBaseline:
    """P(correct) = the skill's training correct rate (add-one smoothed)."""

    def fit(self, frame: pd.DataFrame, n_skills: int) -> SkillBaseline:
        hits = np.bincount(frame["skill"], frame["correct"], n_skills)
        tries = np.bincount(frame["skill"], minlength=n_skills)
        self.rate = (hits + 1) / (tries + 2)
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.rate[frame["skill"].to_numpy()]


class PFA:
    """Logistic regression on skill one-hot and per-skill log prior successes/failures."""

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """Counts from the frame when it carries them (a Feast training set), else computed."""
        given = {"prior_successes", "prior_failures"} <= set(frame.columns)
        counts = frame if given else prior_counts(frame)
        onehot = np.eye(self.n_skills)[frame["skill"].to_numpy()]
        wins = np.log1p(counts["prior_successes"].to_numpy())[:, None] * onehot
        fails = np.log1p(counts["prior_failures"].to_numpy())[:, None] * onehot
        return np.hstack([onehot, wins, fails])

    def fit(self, frame: pd.DataFrame, n_skills: int) -> PFA:
        self.n_skills = n_skills
        self.model = LogisticRegression(C=10.0, max_iter=2000)
        self.model.fit(self.design(frame), frame["correct"].to_numpy())
        return self

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(self.design(frame))[:, 1]

    def practice_gain(self) -> np.ndarray:
        """Per skill: the rise in log-odds from one more success (>= 0), a learning rate."""
        coef = self.model.coef_[0]
        return np.clip(coef[self.n_skills : 2 * self.n_skills], 0, None)


@dataclass
class DKTConfig:
    hidden: int = 32
    epochs: int = 30
    lr: float = 1e-2
    batch: int = 64
    patience: int = 3
    # One thread: on a shared 2-core machine two threads made the fit 10x slower (21 s vs 2 s).
    threads: int = 1
    seed: int = 0
    history: list[float] = field(default_factory=list)


def sequences(frame: pd.DataFrame) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per student (in first-appearance order): skills and answers."""
    groups = frame.groupby("student_id", sort=False)
    return [(g["skill"].to_numpy(), g["correct"].to_numpy()) for _, g in groups]


def tensors(seqs: list, n_skills: int):
    """Inputs (previous answer one-hot, zeros at step 0), target skill, answer, mask."""
    import torch

    length = max(len(s) for s, _ in seqs)
    x = torch.zeros(len(seqs), length, 2 * n_skills)
    skill = torch.zeros(len(seqs), length, dtype=torch.long)
    answer = torch.zeros(len(seqs), length)
    mask = torch.zeros(len(seqs), length, dtype=torch.bool)
    for i, (s, a) in enumerate(seqs):
        n = len(s)
        skill[i, :n], answer[i, :n], mask[i, :n] = torch.as_tensor(s), torch.as_tensor(a), True
        if n > 1:
            x[i, torch.arange(1, n), torch.as_tensor(s[:-1] + n_skills * a[:-1])] = 1.0
    return x, skill, answer, mask


def _network(n_skills: int, hidden: int):
    from training.education.dkt_net import DKTNet

    return DKTNet(n_skills, hidden)


class DKT:
    """An LSTM knowledge tracer, early-stopped on the dev students' AUC."""

    def __init__(self, config: DKTConfig | None = None):
        self.config = config or DKTConfig()

    def fit(self, train: pd.DataFrame, dev: pd.DataFrame, n_skills: int) -> DKT:
        import torch

        cfg, self.n_skills = self.config, n_skills
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.threads)
        try:
            return self._fit(train, dev, torch)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, train: pd.DataFrame, dev: pd.DataFrame, torch) -> DKT:
        cfg, n_skills = self.config, self.n_skills
        torch.manual_seed(cfg.seed)
        self.net = _network(n_skills, cfg.hidden)
        optimiser = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        x, skill, answer, mask = tensors(sequences(train), n_skills)
        generator = torch.Generator().manual_seed(cfg.seed)
        best, best_state, waited = -1.0, None, 0
        for _ in range(cfg.epochs):
            self.net.train()
            for idx in torch.randperm(len(x), generator=generator).split(cfg.batch):
                logits = self.net(x[idx]).gather(2, skill[idx].unsqueeze(2)).squeeze(2)
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits[mask[idx]], answer[idx][mask[idx]]
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            auc = scores(dev["correct"].to_numpy(), self.predict(dev))["auc"]
            cfg.history.append(auc)
            if auc > best:
                best, waited = auc, 0
                best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
            elif (waited := waited + 1) >= cfg.patience:
                break
        self.net.load_state_dict(best_state)
        return self

    @classmethod
    def from_net(cls, net) -> DKT:
        """A tracer around a trained (e.g. registered, reloaded) network."""
        model = cls()
        model.net, model.n_skills = net, net.n_skills
        return model

    def all_skills(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """Per student: (steps + 1, skills) P(correct) before each answer and after the last."""
        import torch

        seqs = sequences(frame)
        padded = [(np.append(s, 0), np.append(a, 0)) for s, a in seqs]
        x, _, _, _ = tensors(padded, self.n_skills)
        self.net.eval()
        with torch.no_grad():
            p = torch.sigmoid(self.net(x)).numpy()
        return [p[i, : len(s) + 1] for i, (s, _) in enumerate(seqs)]

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        out = []
        for (s, _), p in zip(sequences(frame), self.all_skills(frame), strict=True):
            out.append(p[np.arange(len(s)), s])
        return np.concatenate(out)


def ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows grouped by student in first-appearance order, answers in time order: the order
    `DKT.predict` returns its predictions in."""
    first = frame.groupby("student_id", sort=False).ngroup()
    return frame.assign(_g=first).sort_values(["_g", "order"], kind="stable").drop(columns="_g")


def compare(frame: pd.DataFrame, n_skills: int, dkt: DKTConfig | None = None) -> dict:
    """Fit the three families on `train` and score them on `test` (DKT early-stops on dev)."""
    frame = ordered(frame).reset_index(drop=True)
    train, dev, test = (frame[frame["split"] == s] for s in ("train", "dev", "test"))
    y = test["correct"].to_numpy()
    models = {
        "skill_baseline": SkillBaseline().fit(train, n_skills),
        "pfa": PFA().fit(train, n_skills),
        "dkt": DKT(dkt).fit(train, dev, n_skills),
    }
    results = {name: scores(y, model.predict(test)) for name, model in models.items()}
    return {"models": models, "test": results}
