import pytest

from octattn.classes import CLASS_NAMES
from octattn.data.layout import find_dataset_root, load_samples, parse_name, read_manifest, scan_split
from octattn.errors import DataError
from tests.data.helpers import make_tree, write_scan


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CNV-1016042-1.jpeg", ("CNV", "1016042", 1)),
        ("drusen-9928043-12.png", ("DRUSEN", "9928043", 12)),
        ("NORMAL-5246808-2.tif", ("NORMAL", "5246808", 2)),
        ("CNV-0.png", (None, None, None)),
        ("ef9b4e7_NORMAL-3.png", (None, None, None)),
        ("scan.jpg", (None, None, None)),
    ],
)
def test_parse_name(name, expected):
    assert parse_name(name) == expected


def test_kaggle_wrapper_folder_case_and_extensions(tmp_path):
    make_tree(
        tmp_path / "OCT2017 ",
        {
            "train": {"cnv": ["CNV-1-1.jpeg", "CNV-1-2.JPG"], "Normal": ["NORMAL-2-1.png"]},
            "test": {"DME": ["DME-3-1.tif", "notes.txt"]},
        },
    )
    (tmp_path / "OCT2017 " / "train" / "cnv" / ".hidden.jpeg").write_bytes(b"")
    assert find_dataset_root(tmp_path).name == "OCT2017 "
    train = scan_split(tmp_path, "train")
    assert [(s.class_name, s.patient, s.image_number) for s in train] == [
        ("CNV", "1", 1),
        ("CNV", "1", 2),
        ("NORMAL", "2", 1),
    ]
    assert [s.path.name for s in scan_split(tmp_path, "test")] == ["DME-3-1.tif"]


def test_files_without_patient_are_their_own_group(tmp_path):
    make_tree(tmp_path, {"train": {"CNV": ["CNV-0.png", "CNV-1.png"]}})
    samples = scan_split(tmp_path, "train")
    assert all(s.patient is None for s in samples)
    assert len({s.group for s in samples}) == 2


def test_name_of_another_class_keeps_folder_label_and_separates_patient(tmp_path):
    make_tree(tmp_path, {"train": {"DME": ["NORMAL-15307-1.jpeg"]}})
    (sample,) = scan_split(tmp_path, "train")
    assert sample.class_name == "DME" and sample.patient == "NORMAL:15307"


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"train": {"CNV": ["a.jpeg"], "GLAUCOMA": ["b.jpeg"]}}, "unknown class folder"),
        ({"train": {"CNV": []}}, "no images"),
        ({"other": {"CNV": ["a.jpeg"]}}, "no train/"),
    ],
)
def test_bad_trees_are_clear_errors(tmp_path, layout, message):
    make_tree(tmp_path, layout)
    for split, classes in layout.items():
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
    with pytest.raises(DataError, match=message):
        scan_split(tmp_path, "train", classes=CLASS_NAMES)  # a model's classes: GLAUCOMA is not one


def test_manifest(tmp_path):
    write_scan(tmp_path / "img" / "a.png")
    write_scan(tmp_path / "img" / "DME-77-3.jpeg")
    (tmp_path / "m.csv").write_text("path,label,patient,split\nimg/a.png,cnv,p1,train\nimg/DME-77-3.jpeg,DME,,test\n")
    rows = read_manifest(tmp_path / "m.csv")
    assert [(r.class_name, r.patient, r.split) for r in rows] == [("CNV", "p1", "train"), ("DME", "77", "test")]
    assert rows[0].path == tmp_path / "img" / "a.png"
    assert [s.class_name for s in load_samples(tmp_path / "m.csv", "test")] == ["DME"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("file,class\na,b\n", "needs a header"), ("path,label\na.png,GLAUCOMA\n", r"m\.csv:2: unknown class")],
)
def test_bad_manifest(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        read_manifest(tmp_path / "m.csv", classes=CLASS_NAMES)


def test_real_tree(real_data):
    test = scan_split(real_data, "test")
    assert len(test) == 36
    assert {s.class_name for s in test} == {"CNV", "DME", "DRUSEN", "NORMAL"}
    renamed = scan_split(real_data, "renamed")
    assert all(s.patient is None for s in renamed)
