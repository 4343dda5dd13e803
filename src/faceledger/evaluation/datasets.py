"""Reading evaluation inputs: LFW ``pairs.txt``, person folders, group CSVs (no embedding here)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Pair:
    fold: int
    same: bool
    a: str  # "Person/Person_0001.jpg"
    b: str


def image_name(person: str, number: str | int) -> str:
    return f"{person}/{person}_{int(number):04d}.jpg"


def read_pairs(path: Path) -> list[Pair]:
    """LFW ``pairs.txt``: a header ``<folds> <n>`` (or ``<n>`` alone: one fold), then per fold n matched lines
    ``name i j`` and n mismatched lines ``name1 i name2 j``. Lines are read as they come, so files that do
    not keep that order are accepted too (the fold is then counted from the header's sizes)."""
    rows = [ln.split() for ln in Path(path).read_text().splitlines() if ln.strip()]
    if not rows:
        raise ValueError(f"{path}: empty pairs file")
    head = rows[0]
    if len(head) == 2 and all(t.isdigit() for t in head):
        folds, per = int(head[0]), int(head[1])
        body = rows[1:]
    elif len(head) == 1 and head[0].isdigit():
        folds, per = 1, int(head[0])
        body = rows[1:]
    else:
        folds, per = 1, 0
        body = rows
    size = 2 * per if per else len(body)
    out = []
    for k, t in enumerate(body):
        fold = min(k // size, folds - 1) if size else 0
        if len(t) == 3:
            out.append(Pair(fold, True, image_name(t[0], t[1]), image_name(t[0], t[2])))
        elif len(t) == 4:
            out.append(Pair(fold, False, image_name(t[0], t[1]), image_name(t[2], t[3])))
        else:
            raise ValueError(f"{path}: line {k + 2} is neither 'name i j' nor 'name1 i name2 j': {' '.join(t)}")
    return out


def person_of(rel: str) -> str:
    return rel.split("/", 1)[0]


def read_groups(path: Path) -> dict[str, str]:
    """A CSV mapping an image (``Person/Person_0001.jpg`` or ``Person_0001.jpg``) or an identity
    (``Person``) to a group label. Columns: the first two, or the ones named ``key``/``image``/``person``
    and ``group``; a header row is optional. Empty labels are skipped."""
    out: dict[str, str] = {}
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return out
    header = [c.strip().lower() for c in rows[0]]
    ki, gi = 0, 1
    names = ("key", "image", "file", "person", "identity", "name")
    if any(c in names for c in header) and "group" in header:
        ki = next(i for i, c in enumerate(header) if c in names)
        gi = header.index("group")
        rows = rows[1:]
    for r in rows:
        if len(r) > max(ki, gi) and r[ki].strip() and r[gi].strip():
            out[r[ki].strip()] = r[gi].strip()
    return out


def group_of(rel: str, groups: dict[str, str]) -> str | None:
    """An image's group: its own label, else its identity's."""
    return groups.get(rel) or groups.get(rel.rsplit("/", 1)[-1]) or groups.get(person_of(rel))


def identity_groups(paths: list[str], groups: dict[str, str]) -> dict[str, str]:
    """One label per identity: the most common among its images (identity-level labels as they are)."""
    votes: dict[str, dict[str, int]] = {}
    for p in paths:
        g = group_of(p, groups)
        if g is not None:
            votes.setdefault(person_of(p), {}).setdefault(g, 0)
            votes[person_of(p)][g] += 1
    return {who: max(v, key=lambda g: (v[g], g)) for who, v in votes.items()}


def draw_impostors(paths: list[str], n: int, seed: int = 0, exclude: set[tuple[str, str]] | None = None) -> np.ndarray:
    """``n`` distinct impostor pairs (index pairs into ``paths``, different identities) drawn uniformly."""
    rng = np.random.default_rng(seed)
    people = np.array([person_of(p) for p in paths])
    _, lab = np.unique(people, return_inverse=True)
    total = len(paths) * (len(paths) - 1) // 2
    n = min(int(n), total - int((np.bincount(lab) * (np.bincount(lab) - 1) // 2).sum()))
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    while len(out) < n:
        m = int((n - len(out)) * 1.3) + 16
        a = rng.integers(0, len(paths), m)
        b = rng.integers(0, len(paths), m)
        for x, y in zip(a.tolist(), b.tolist()):
            if lab[x] == lab[y]:
                continue
            key = (x, y) if x < y else (y, x)
            if key in seen or (exclude and (paths[key[0]], paths[key[1]]) in exclude):
                continue
            seen.add(key)
            out.append(key)
            if len(out) == n:
                break
    return np.array(out, np.int64).reshape(-1, 2)
