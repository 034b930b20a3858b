"""The paper's results table: metric × level rows, one column per model, best (lowest) in bold."""

from __future__ import annotations

import csv
import io

import pytest

from backend.errors import InputError
from backend.experiment.report.prose import SEED_TABLE
from backend.metrics.table import to_csv, to_markdown, write_tables

# The paper's numbers (docs/metrics.md): baseline PIFu vs the patch-SSIM and L1 fine-tunes; L1's levels
# out of order on purpose (the table orders them).
RESULTS = {
    "PIFu": SEED_TABLE["baseline"],
    "patch-SSIM": SEED_TABLE["ssim"],
    "L1": {level: SEED_TABLE["l1"][level] for level in ("clear", "wild", "intermediate")},
}


def test_markdown_layout_and_bold_best():
    lines = to_markdown(RESULTS).strip().splitlines()
    assert lines[0] == "| metric | level | PIFu | patch-SSIM | L1 |"
    assert lines[1] == "|---|---|---:|---:|---:|"
    assert [line.split("|")[1:3] for line in lines[2:]] == [
        [" PATD ", " wild "], [" PATD ", " intermediate "], [" PATD ", " clear "],
        [" PIPATD ", " wild "], [" PIPATD ", " intermediate "], [" PIPATD ", " clear "]]
    assert lines[2] == "| PATD | wild | 18.78 | 10.33 | **10.32** |"
    assert lines[4] == "| PATD | clear | 13.26 | **9.12** | 9.16 |"
    assert lines[5] == "| PIPATD | wild | 16.09 | **8.15** | 8.17 |"
    assert lines[7] == "| PIPATD | clear | 10.79 | **7.01** | 7.07 |"
    for line in lines[2:]:
        assert line.count("**") == 2  # exactly one bold cell per row here


def test_ties_missing_values_and_single_model():
    results = {"a": {"wild": {"patd": 5.0, "pipatd": 4.0}}, "b": {"wild": {"patd": 5.0}},
               "c": {"clear": {"patd": 1.0, "pipatd": 1.0}}}
    md = to_markdown(results, decimals=1)
    assert "| PATD | wild | **5.0** | **5.0** | – |" in md
    assert "| PIPATD | wild | 4.0 | – | – |" in md  # a lone value is not "best"
    assert "| PATD | clear | – | – | 1.0 |" in md
    alone = to_markdown({"only": {"wild": {"patd": 3.0, "pipatd": 2.0}}})
    assert "**" not in alone


def test_csv_round_trip_keeps_full_precision():
    results = {"m1": {"wild": {"patd": 12.345678912, "pipatd": 9.5}},
               "m2": {"wild": {"patd": 11.0}}}
    rows = list(csv.reader(io.StringIO(to_csv(results))))
    assert rows[0] == ["metric", "level", "m1", "m2"]
    assert rows[1] == ["PATD", "wild", "12.345678912", "11.0"]
    assert rows[2] == ["PIPATD", "wild", "9.5", ""]


def test_explicit_levels_and_unknown_levels_order():
    results = {"m": {"dusk": {"patd": 1.0, "pipatd": 1.0}, "clear": {"patd": 2.0, "pipatd": 2.0}}}
    md = to_markdown(results)
    assert md.index("| clear |") < md.index("| dusk |")
    only_clear = to_markdown(results, levels=["clear"])
    assert "dusk" not in only_clear


def test_write_tables_atomically(tmp_path):
    md, csv_path = write_tables(RESULTS, tmp_path / "out" / "table.md")
    assert md.name == "table.md" and csv_path.name == "table.csv"
    assert md.read_text() == to_markdown(RESULTS)
    assert csv_path.read_text() == to_csv(RESULTS)
    assert not [p for p in (tmp_path / "out").iterdir() if ".tmp-" in p.name]


def test_bad_results():
    with pytest.raises(InputError, match="no results"):
        to_markdown({})
    with pytest.raises(InputError, match="finite"):
        to_markdown({"m": {"wild": {"patd": float("nan"), "pipatd": 1.0}}})


def test_dense_flavour_rows_and_note():
    results = {"a": {"wild": {"patd": 5.0, "pipatd": 4.0, "patd_dense": 3.0, "pipatd_dense": 2.0}},
               "b": {"wild": {"patd": 6.0, "pipatd": 3.5, "patd_dense": 3.5, "pipatd_dense": 1.5}}}
    lines = to_markdown(results, dense_samples=200_000).strip().splitlines()
    assert [line.split("|")[1:3] for line in lines[2:6]] == [
        [" PATD ", " wild "], [" PIPATD ", " wild "],
        [" PATD dense ", " wild "], [" PIPATD dense ", " wild "]]
    assert lines[4] == "| PATD dense | wild | **3.00** | 3.50 |"
    assert lines[5] == "| PIPATD dense | wild | 2.00 | **1.50** |"
    assert lines[6] == ""
    assert "the paper's protocol" in lines[7]
    assert "against 200,000 area-uniform GT surface samples" in lines[7]
    rows = list(csv.reader(io.StringIO(to_csv(results))))
    assert [r[0] for r in rows[1:]] == ["PATD", "PIPATD", "PATD dense", "PIPATD dense"]
    assert "dense" not in to_markdown(RESULTS)  # no dense values: the paper's table exactly
