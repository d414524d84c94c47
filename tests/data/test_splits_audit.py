import json
from pathlib import Path

import numpy as np
from PIL import Image

from octattn.cli import main
from octattn.data.audit import audit_dataset
from octattn.data.layout import Sample, scan_split
from octattn.data.splits import patient_split, save_split
from tests.data.helpers import make_tree


def _samples() -> list[Sample]:
    rows = []
    for patient in range(40):
        label = patient % 4
        rows += [Sample(Path(f"p{patient}-{i}.png"), label, str(patient)) for i in range(1 + patient % 3)]
    return rows


def test_patient_split_has_no_patient_on_both_sides_and_is_seeded(tmp_path):
    samples = _samples()
    train, val = patient_split(samples, 0.25, seed=3)
    assert not {s.patient for s in train} & {s.patient for s in val}
    assert len(train) + len(val) == len(samples)
    assert {s.label for s in val} == {0, 1, 2, 3}
    again, _ = patient_split(samples, 0.25, seed=3)
    assert [s.path for s in again] == [s.path for s in train]
    other, _ = patient_split(samples, 0.25, seed=4)
    assert [s.path for s in other] != [s.path for s in train]
    save_split(tmp_path / "split.json", train, val, 3, 0.25)
    record = json.loads((tmp_path / "split.json").read_text())
    assert len(record["val"]) == len(val) and record["seed"] == 3


def test_tiny_data_still_splits():
    """Four patients per class cannot make ten folds; the split must still work."""
    samples = [Sample(Path(f"{c}-{i}.png"), c, f"{c}-{i}") for c in range(4) for i in range(4)]
    train, val = patient_split(samples, 0.1, seed=0)
    assert train and val and not {s.patient for s in train} & {s.patient for s in val}


def test_real_split_keeps_patients_apart(real_data):
    train, val = patient_split(scan_split(real_data, "train"), 0.2, seed=0)
    assert not {s.group for s in train} & {s.group for s in val}


def test_audit_finds_the_known_leaks_in_the_real_sample(real_data, tmp_path, capsys):
    report = audit_dataset(real_data)
    leaked = {item["patient"] for item in report.cross_split_patients}
    assert {"9928043", "53018"} <= leaked
    assert {"15307", "15208", "53018"} <= {item["patient"] for item in report.multi_class_patients}
    assert report.files_without_patient >= 70
    assert report.extension_mismatches > 0
    assert report.leakage
    code = main(["data", "audit", str(real_data), "--json", str(tmp_path / "a.json")])
    assert code == 1
    assert "9928043" in capsys.readouterr().out
    assert json.loads((tmp_path / "a.json").read_text())["leakage"] is True


def test_audit_of_planted_problems(tmp_path):
    root = make_tree(
        tmp_path,
        {
            "train": {"CNV": ["CNV-1-1.jpeg", "CNV-2-1.jpeg"], "DME": ["DME-5-1.jpeg"]},
            "test": {"CNV": ["CNV-3-1.jpeg"], "NORMAL": ["NORMAL-5-2.jpeg"]},
        },
    )
    (root / "test" / "CNV" / "copy.jpeg").write_bytes((root / "train" / "CNV" / "CNV-1-1.jpeg").read_bytes())
    smooth = np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (96, 1))
    smooth[30:60, 40:90] = 30
    Image.fromarray(smooth).save(root / "train" / "CNV" / "CNV-7-1.png")
    Image.fromarray(smooth).resize((64, 48)).save(root / "test" / "CNV" / "resized.jpeg", quality=70)
    (root / "test" / "CNV" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    report = audit_dataset(root)
    assert [item["patient"] for item in report.cross_split_patients] == ["5"]
    assert len(report.exact_duplicates) == 1
    assert [{Path(p["a"]).name, Path(p["b"]).name} for p in report.near_duplicates] == [{"resized.jpeg", "CNV-7-1.png"}]
    assert [Path(u["path"]).name for u in report.unreadable] == ["broken.jpeg"]
    assert report.multi_class_patients == [{"patient": "5", "classes": ["DME", "NORMAL"]}]
    assert report.files_without_patient == 3


def test_clean_tree_exits_zero(tmp_path):
    make_tree(tmp_path, {"train": {"CNV": ["CNV-1-1.jpeg"]}, "test": {"CNV": ["CNV-2-1.jpeg"]}})
    assert main(["data", "audit", str(tmp_path)]) == 0


def test_linked_groups_join_patients_copies_and_near_duplicates_transitively(tmp_path):
    from octattn.data.audit import linked_groups, read_record

    root = make_tree(tmp_path, {"train": {"CNV": ["CNV-1-1.jpeg", "CNV-1-2.jpeg", "a.jpeg", "b.jpeg"]}})
    smooth = np.tile(np.linspace(0, 255, 128, dtype=np.uint8), (96, 1))
    smooth[30:60, 40:90] = 30
    Image.fromarray(smooth).save(root / "train" / "CNV" / "c.png")
    Image.fromarray(smooth).resize((64, 48)).save(root / "train" / "CNV" / "d.jpeg", quality=70)
    folder = root / "train" / "CNV"
    (folder / "e.jpeg").write_bytes((folder / "CNV-1-2.jpeg").read_bytes())  # a copy of patient 1's scan
    names = ["CNV-1-1.jpeg", "CNV-1-2.jpeg", "a.jpeg", "b.jpeg", "c.png", "d.jpeg", "e.jpeg"]
    records = [read_record(Sample(folder / n, 0, split="train")) for n in names]
    groups = dict(zip(names, linked_groups(records), strict=True))
    assert groups["CNV-1-1.jpeg"] == groups["CNV-1-2.jpeg"] == groups["e.jpeg"] == "patient:1"
    assert groups["c.png"] == groups["d.jpeg"]  # near-duplicates, no patient id
    assert len({groups["a.jpeg"], groups["b.jpeg"], groups["c.png"], "patient:1"}) == 4
