"""Population B's split by person group (backend.experiment.population) on real VALID avatars.

The three committed clothed avatars (tests/fixtures/valid) plus copies of them under other VALID names,
made in a temporary folder: the split reads the real folder layout and index.csv, and must keep every
person group (one person's outfits, and persons that share a face) inside one split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backend.errors import InputError
from backend.experiment import population as pop

ROOT = Path(__file__).resolve().parents[1]
VALID = ROOT / "tests" / "fixtures" / "valid"
COPIES = {"Black_M_3_Milit": ["Asian_M_2_Busi", "Asian_F_1_Casual", "Black_M_3_Busi", "MENA_M_1_Util"],
          "Hispanic_F_2_Util": ["MENA_F_2_Util", "Asian_F_3_Medi", "Asian_F_2_Busi", "NHPI_M_2_Casual"],
          "White_M_1_Casual": ["NHPI_M_1_Medi", "White_M_1_Busi", "White_F_2_Util", "Black_F_1_Milit"]}


def make_population(folder: Path, copies: dict[str, list[str]] = COPIES) -> Path:
    """The fixtures plus renamed copies (the OBJ renamed; its MTL and texture keep their names)."""
    folder.mkdir(parents=True, exist_ok=True)
    for orig, names in copies.items():
        shutil.copytree(VALID / orig, folder / orig, dirs_exist_ok=True)
        for name in names:
            (folder / name).mkdir(exist_ok=True)
            for f in (VALID / orig).iterdir():
                shutil.copy(f, folder / name / (f"{name}.obj" if f.suffix == ".obj" else f.name))
    return folder


@pytest.fixture
def population(tmp_path) -> list[pop.Avatar]:
    return pop.read_population(make_population(tmp_path / "valid"))


def test_person_and_group_of_names():
    assert pop.person_of("Black_M_3_Milit") == "Black_M_3"
    assert pop.person_of("X_AIAN_F_1_Casual") == "X_AIAN_F_1"  # another person than AIAN_F_1
    assert pop.group_of("Asian_F_3") == pop.group_of("Asian_F_1") == pop.group_of("Asian_F_2")
    assert pop.group_of("X_AIAN_F_1") != pop.group_of("AIAN_F_1")
    with pytest.raises(InputError, match="RACE_SEX_N_OUTFIT"):
        pop.person_of("scan_0001")


def test_the_committed_index_names_the_persons():
    avatars = pop.read_population(VALID)
    assert {a.name: a.person for a in avatars} == {"Black_M_3_Milit": "Black_M_3",
                                                    "Hispanic_F_2_Util": "Hispanic_F_2",
                                                    "White_M_1_Casual": "White_M_1"}
    assert all(a.mesh.is_file() for a in avatars)


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
def test_splits_are_disjoint_by_person_group_and_fixtures_are_test(population, seed):
    split = pop.split_population(population, seed=seed)
    record = pop.split_record(population, split, seed=seed, val_fraction=0.2, test_fraction=0.2, source="x")
    groups = pop.groups_by_split(record)
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    assert sorted(sum(split.values(), [])) == sorted(a.name for a in population)  # every avatar, once
    assert {"Black_M_3_Milit", "Black_M_3_Busi", "Hispanic_F_2_Util", "White_M_1_Casual",
            "White_M_1_Busi"} <= set(split["test"])
    # Asian_F_1 / _2 / _3 share a face: one group, in one split.
    asian_f = [s for s, names in split.items() for n in names if n.startswith("Asian_F_")]
    assert len(asian_f) == 3 and len(set(asian_f)) == 1


def test_split_is_deterministic_and_depends_on_the_seed(population):
    a = pop.split_population(population, seed=3)
    assert a == pop.split_population(list(reversed(population)), seed=3)
    others = [pop.split_population(population, seed=s) for s in range(6)]
    assert any(o["val"] != others[0]["val"] for o in others[1:])


def test_too_few_groups_is_a_clear_error(tmp_path):
    folder = make_population(tmp_path / "v", {"Black_M_3_Milit": ["Black_M_3_Busi", "Black_M_3_Util"]})
    with pytest.raises(InputError, match="person group"):
        pop.split_population(pop.read_population(folder))


def test_a_folder_without_its_obj_is_refused(tmp_path):
    folder = make_population(tmp_path / "v")
    (folder / "Asian_M_2_Busi" / "Asian_M_2_Busi.obj").unlink()
    with pytest.raises(InputError, match="has no Asian_M_2_Busi.obj"):
        pop.read_population(folder)
