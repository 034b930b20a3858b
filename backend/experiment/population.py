"""Population B: real clothed avatars (a VALID-like folder), split into train / validation / test by person.

A VALID-like folder holds one sub-folder per avatar, ``NAME/NAME.obj`` (textured OBJ), named
``RACE_SEX_N_OUTFIT`` (``X_`` in front for the library's non-validated avatars); an optional ``index.csv``
has a ``person`` column. The person is the ``RACE_SEX_N`` prefix: one person's outfits share one face mesh
and texture, so a person whose outfits straddle two splits would let the test split see a trained face.

Some differently named persons are the same face, or nearly (the library's own check of face geometry
and face texture): :data:`SAME_FACE` joins them into one **group**, and the split is made over groups. The
persons of the avatars committed under ``tests/fixtures/valid/`` (:data:`ALWAYS_TEST`) are always in the
test split: the tests and the demo reconstruct them as held-out avatars, so no run may train on them or
make a choice on them.

The split is a pure function of (the folder's groups, the fractions, the seed), written to the run as
``split.json`` (:func:`split_record`) so that a resumed or audited run uses exactly the same one.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import InputError

SPLITS = ("train", "val", "test")
PERSON = re.compile(r"^((?:X_)?[A-Za-z]+_[MF]_\d+)(?:_|$)")
"""The person prefix of a VALID avatar name: ``RACE_SEX_N``, with the non-validated ``X_`` kept
(``X_AIAN_F_1`` is another person than ``AIAN_F_1``)."""

SAME_FACE: tuple[tuple[str, ...], ...] = (
    ("AIAN_F_1", "AIAN_F_2"),
    ("Asian_F_1", "Asian_F_2", "Asian_F_3"),
    ("Black_F_2", "Black_M_2"),
    ("White_F_1", "White_F_3"),
)
"""Differently named persons that share a face mesh (< 0.5 mm) or a near-identical face texture: one group."""

ALWAYS_TEST: tuple[str, ...] = ("Black_M_3", "Hispanic_F_2", "White_M_1")
"""The persons of tests/fixtures/valid/ (the tests' and the demo's held-out clothed avatars)."""


@dataclass(frozen=True)
class Avatar:
    """One avatar of population B: its name, person, person group and mesh file."""

    name: str
    person: str
    group: str
    mesh: Path


def person_of(name: str) -> str:
    """The ``RACE_SEX_N`` person of a VALID avatar name, or an InputError naming the avatar."""
    m = PERSON.match(name)
    if not m:
        raise InputError(f"avatar {name!r} is not named RACE_SEX_N_OUTFIT (e.g. Black_M_3_Milit): its person "
                         f"cannot be told; rename it or give the person in index.csv")
    return m.group(1)


def group_of(person: str) -> str:
    """The person group: the first name of its :data:`SAME_FACE` entry, else the person itself."""
    for names in SAME_FACE:
        if person in names:
            return names[0]
    return person


def read_population(folder: str | Path) -> list[Avatar]:
    """The avatars of a VALID-like folder (module docstring), sorted by name.

    The person comes from ``index.csv`` when it lists the avatar, else from the name. A sub-folder without
    its ``NAME.obj`` is an error, not a silent skip: a half-copied library would change the split.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"population folder not found: {root}")
    persons = _index_persons(root / "index.csv")
    avatars = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        mesh = sub / f"{sub.name}.obj"
        if not mesh.is_file():
            raise InputError(f"{sub} has no {sub.name}.obj; a population folder holds NAME/NAME.obj "
                             "per avatar")
        person = persons.get(sub.name) or person_of(sub.name)
        avatars.append(Avatar(sub.name, person, group_of(person), mesh))
    if len(avatars) < 3:
        raise InputError(f"{root} holds {len(avatars)} avatar(s); population B needs at least three "
                         "(train, validation and test)")
    return avatars


def _index_persons(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    return {r["avatar"]: r["person"] for r in rows if r.get("avatar") and r.get("person")}


def _rank(group: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"population-split:{seed}:{group}".encode()).digest()[:8], "little")


def split_population(avatars: Sequence[Avatar], *, seed: int = 0, val_fraction: float = 0.2,
                     test_fraction: float = 0.2, always_test: Iterable[str] = ALWAYS_TEST
                     ) -> dict[str, list[str]]:
    """``{"train": [...], "val": [...], "test": [...]}`` avatar names, split by person group.

    Groups are ordered by a hash of (seed, group), so the split is deterministic and a new avatar of an
    existing person never moves others. The groups of ``always_test`` persons go to test first; test and
    validation are then filled up to their fractions of the avatars (at least one avatar each), and
    everything else trains.
    """
    if not (0.0 < val_fraction < 1.0 and 0.0 < test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise InputError(f"val/test fractions must be in (0, 1) with a sum below 1, got {val_fraction} "
                         f"and {test_fraction}")
    by_group: dict[str, list[str]] = {}
    for a in avatars:
        by_group.setdefault(a.group, []).append(a.name)
    if len(by_group) < 3:
        raise InputError(f"population B has {len(by_group)} person group(s); a split by person needs at "
                         "least three (train, validation, test)")
    forced = {group_of(p) for p in always_test} & set(by_group)
    order = sorted(by_group, key=lambda g: (_rank(g, seed), g))
    n = len(avatars)
    want_test, want_val = max(1, math.ceil(test_fraction * n)), max(1, math.ceil(val_fraction * n))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for g in [g for g in order if g in forced]:
        out["test"] += by_group[g]
    rest = [g for g in order if g not in forced]
    for g in rest:
        if len(out["test"]) < want_test:
            out["test"] += by_group[g]
        elif len(out["val"]) < want_val:
            out["val"] += by_group[g]
        else:
            out["train"] += by_group[g]
    empty = [s for s in SPLITS if not out[s]]
    if empty:
        raise InputError(f"population B's {len(by_group)} person groups leave the {', '.join(empty)} "
                         "split empty; give more persons or smaller fractions")
    return {s: sorted(v) for s, v in out.items()}


def split_record(avatars: Sequence[Avatar], split: Mapping[str, list[str]], *, seed: int,
                 val_fraction: float, test_fraction: float, source: str | Path) -> dict[str, Any]:
    """What ``split.json`` holds: the split by avatar, with each avatar's person and group."""
    info = {a.name: a for a in avatars}
    return {"format": "avatex-population-split", "format_version": 1, "source": str(source), "seed": seed,
            "val_fraction": val_fraction, "test_fraction": test_fraction,
            "always_test": list(ALWAYS_TEST), "same_face": [list(g) for g in SAME_FACE],
            "splits": {s: [{"avatar": n, "person": info[n].person, "group": info[n].group}
                           for n in split[s]] for s in SPLITS}}


def groups_by_split(record: Mapping[str, Any]) -> dict[str, set[str]]:
    """The person groups of each split of a ``split.json`` record (what the disjointness check compares)."""
    return {s: {row["group"] for row in record["splits"][s]} for s in SPLITS}
