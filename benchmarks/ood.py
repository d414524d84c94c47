"""Safe at the door, measured: what the out-of-distribution flag, abstention and the volume rule
do on images that are not OCT, on real OCT2017 scans, and on phantom volumes.

1. The demo's phantom model (``octattn demo``, or ``--demo-run RUN``): the share flagged of
   41 images that are not retinal OCT B-scans (photographs colour and gray, a fundus
   photograph, a CT phantom and its sinogram, scanned and rendered text, textures, synthetic
   patterns, noise, blank and gradient images; made here from scikit-image's bundled images
   and numpy), of its own test phantoms, and of the 307 real OCT2017 scans.
2. A model trained on real OCT2017 scans (``oct2017-mini`` train + renamed and ``oct2017-extra``,
   128 px, from scratch): the share flagged of the 36 held-out real test scans and of the 41.
3. Abstention on the demo model's test phantoms: coverage and the accuracy of the accepted
   scans (patient-bootstrap interval) against the target set on validation.
4. Volumes: normal phantom volumes of 25-128 B-scans and volumes with a lesion in 3 B-scans,
   called by the old ``any`` rule and by the ``count`` rule.

Run: ``python -m benchmarks.ood [--demo-run RUN] [--quick]``; writes results/ood.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.common import REAL_DATA, REDONE_WHOLE, write_results
from octattn.classes import CLASS_NAMES
from octattn.data.phantom import generate_phantom
from octattn.evaluation.evaluate import evaluate_model
from octattn.inference.checks import cheap_finding
from octattn.inference.predictor import Predictor, ScanPrediction
from octattn.inference.volume_call import VolumeRule, volume_call

EXTRA_DATA = REAL_DATA.parent / "oct2017-extra"
VOLUME_SIZES = (25, 49, 97, 128)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _gray(array: np.ndarray) -> np.ndarray:
    image = Image.fromarray(array)
    return np.asarray(image.convert("L") if image.mode != "L" else image, dtype=np.uint8)


def non_oct_images() -> list[tuple[str, str, np.ndarray]]:
    """(kind, name, image as uint8, gray or colour) for 41 images that are not OCT B-scans."""
    import skimage.data as data
    from skimage.transform import radon
    from skimage.util import img_as_ubyte

    def ubyte(a: np.ndarray) -> np.ndarray:
        return img_as_ubyte(a) if a.dtype != np.uint8 else a

    rng = np.random.default_rng(0)
    images: list[tuple[str, str, np.ndarray]] = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"):
        images.append(("photograph (colour)", name, ubyte(getattr(data, name)())))
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        images.append(("photograph (gray)", name + " gray", _gray(ubyte(getattr(data, name)()))))
    for name in ("camera", "moon", "clock", "coins", "horse"):
        images.append(
            ("photograph (gray)", name, ubyte(getattr(data, name)().astype(np.uint8) * (255 if name == "horse" else 1)))
        )
    images.append(("fundus photograph", "retina", ubyte(data.retina())))
    images.append(("fundus photograph", "retina gray", _gray(ubyte(data.retina()))))
    images.append(("fundus photograph", "microaneurysms", ubyte(data.microaneurysms())))
    phantom = data.shepp_logan_phantom()
    images.append(("CT", "Shepp-Logan phantom", ubyte(phantom)))
    sinogram = radon(phantom, theta=np.linspace(0, 180, 180, endpoint=False))
    images.append(("CT", "sinogram", ubyte(sinogram / sinogram.max())))
    images.append(("text", "scanned page", ubyte(data.page())))
    images.append(("text", "text", ubyte(data.text())))
    rendered = Image.new("L", (512, 496), 240)
    draw = ImageDraw.Draw(rendered)
    for row in range(8, 480, 20):
        draw.text((10, row), "The patient was seen in clinic today; visual acuity 6/9 in the right eye. " * 2, fill=15)
    images.append(("text", "rendered letter", np.asarray(rendered)))
    for name in ("grass", "gravel", "brick"):
        images.append(("texture", name, ubyte(getattr(data, name)())))
    images.append(("synthetic pattern", "checkerboard", ubyte(data.checkerboard())))
    images.append(
        ("synthetic pattern", "binary blobs", ubyte(data.binary_blobs(length=256, rng=0).astype(np.uint8) * 255))
    )
    images.append(("synthetic pattern", "cell", ubyte(data.cell())))
    images.append(("synthetic pattern", "colour wheel", ubyte(data.colorwheel())))
    images.append(("synthetic pattern", "logo", ubyte(data.logo()[..., :3])))
    images.append(
        (
            "synthetic pattern",
            "stripes",
            (np.sin(np.arange(512) / 6)[None, :] * 127 + 128).repeat(496, 0).astype(np.uint8),
        )
    )
    images.append(("noise", "uniform noise", rng.integers(0, 256, (496, 512), dtype=np.uint8)))
    images.append(("noise", "gaussian noise", np.clip(rng.normal(128, 40, (496, 512)), 0, 255).astype(np.uint8)))
    salt = np.full((496, 512), 128, np.uint8)
    salt[rng.random((496, 512)) < 0.1] = 255
    images.append(("noise", "salt and pepper", salt))
    for value, name in ((255, "white"), (0, "black"), (128, "mid gray")):
        images.append(("blank", name, np.full((496, 512), value, np.uint8)))
    x = np.linspace(0, 255, 512, dtype=np.float32)
    images.append(("gradient", "horizontal", np.tile(x, (496, 1)).astype(np.uint8)))
    images.append(("gradient", "vertical", np.tile(np.linspace(0, 255, 496)[:, None], (1, 512)).astype(np.uint8)))
    yy, xx = np.mgrid[0:496, 0:512]
    radial = np.hypot(yy - 248, xx - 256)
    images.append(("gradient", "radial", (255 * radial / radial.max()).astype(np.uint8)))
    return images


def predict_non_oct(predictor: Predictor, images: list[tuple[str, str, np.ndarray]]) -> list[ScanPrediction]:
    """Each image as a file would come in: decoded to gray, the colour check on its PNG bytes."""
    grays = [_gray(image) for _, _, image in images]
    findings = [cheap_finding(g, _png(image)) for g, (_, _, image) in zip(grays, images, strict=True)]
    return predictor.predict_arrays(grays, [name for _, name, _ in images], findings)


def _share(predictions: list[ScanPrediction]) -> dict[str, Any]:
    flagged = [bool(p.ood) for p in predictions]
    return {"n": len(flagged), "flagged": int(sum(flagged)), "share": float(np.mean(flagged)) if flagged else None}


def flags(predictor: Predictor, images: list[tuple[str, str, np.ndarray]], real: list[Path]) -> dict[str, Any]:
    """The share flagged of the 41 images and of real scans, by kind, with the cheap checks apart."""
    predictions = predict_non_oct(predictor, images)
    by_kind: dict[str, list[ScanPrediction]] = {}
    for (kind, _, _), prediction in zip(images, predictions, strict=True):
        by_kind.setdefault(kind, []).append(prediction)
    missed = [name for (_, name, _), p in zip(images, predictions, strict=True) if not p.ood]
    cheap = sum(bool(p.ood) and not p.ood_reason.startswith("score") for p in predictions)
    result = {
        "non_oct": {**_share(predictions), "by_cheap_checks": cheap, "missed": missed},
        "non_oct_by_kind": {kind: _share(p) for kind, p in by_kind.items()},
        "threshold": predictor.ood.threshold if predictor.ood else None,
    }
    if real:
        result["real_oct2017"] = _share(predictor.predict_files(real).predictions)
    return result


def _volume(
    predictor: Predictor, n: int, lesion: int | None, rng: np.random.Generator, shown: int = 3
) -> list[ScanPrediction]:
    """A phantom volume of ``n`` B-scans: NORMAL ones, ``shown`` of them of class ``lesion`` where given."""
    labels = [CLASS_NAMES.index("NORMAL")] * n
    if lesion is not None:
        for i in rng.choice(n, shown, replace=False):
            labels[i] = lesion
    scans = [generate_phantom(label, rng).image for label in labels]
    return predictor.predict_arrays(scans, [str(i) for i in range(n)])


def _urgent_share(
    calls: list[list[ScanPrediction]], tiers: dict[str, str | None], rule: VolumeRule, urgent: set[str]
) -> float:
    return float(np.mean([volume_call(v, tiers, rule)[0] in urgent for v in calls]))


def volumes(predictor: Predictor, count: int, seed: int = 0) -> dict[str, Any]:
    """False urgent rates of normal volumes by size, and the sensitivity for a lesion in a few B-scans."""
    rng = np.random.default_rng(seed)
    tiers = predictor.config.referral
    rules = {"any": VolumeRule("any"), "count": VolumeRule.from_dict(predictor.config.decision.get("volume"))}
    urgent = {c for c, t in tiers.items() if t == "urgent"}
    out: dict[str, Any] = {"volumes_per_size": count, "false_urgent": {}, "sensitivity": {}}
    for n in VOLUME_SIZES:
        calls = [_volume(predictor, n, None, rng) for _ in range(count)]
        out["false_urgent"][str(n)] = {name: _urgent_share(calls, tiers, rule, urgent) for name, rule in rules.items()}
    lesions = [CLASS_NAMES.index(c) for c in ("CNV", "DME") for _ in range(count // 2)]
    for n, shown in ((49, 3), (49, 6), (97, 3), (97, 6)):
        sick = [_volume(predictor, n, lesion, rng, shown) for lesion in lesions]
        out["sensitivity"][f"{shown} of {n}"] = {
            name: _urgent_share(sick, tiers, rule, urgent) for name, rule in rules.items()
        }
    out["bscan_false_urgent_rate"] = {c: rules["count"].false_rates.get(c) for c in urgent}
    return out


def _real_scans() -> list[Path]:
    if not REAL_DATA.is_dir():
        return []
    found = [*sorted(REAL_DATA.rglob("*.jpeg")), *sorted(REAL_DATA.rglob("*.png"))]
    if EXTRA_DATA.is_dir():
        found += sorted(EXTRA_DATA.rglob("*.jpeg"))
    return found


def real_manifest(out: Path) -> Path:
    """A CSV of the real OCT2017 scans: mini's test split held out, the rest to train on."""
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "split"])
        for path in _real_scans():
            split = "test" if path.parent.parent.name == "test" else "train"
            writer.writerow([str(path), path.parent.name, split])
    return out


def main() -> int:
    """Run every part and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-run", help="an existing `octattn demo` folder (default: run the demo)")
    parser.add_argument("--quick", action="store_true", help="tiny models: checks the code path in a few minutes")
    args = parser.parse_args()
    from octattn.demo import config_path, run_demo
    from octattn.training.config import load_config
    from octattn.training.loop import train

    images = non_oct_images()
    real = _real_scans()
    quick = ["epochs=1", "image_size=75"] if args.quick else []
    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(args.demo_run) if args.demo_run else run_demo(Path(tmp) / "demo", overrides=quick).out_dir
        demo_model = demo / "run" / "model"
        predictor = Predictor(demo_model)
        phantom = flags(predictor, images, real)
        own = sorted((demo / "data" / "test").rglob("*.png"))
        phantom["own_test_phantoms"] = _share(predictor.predict_files(own).predictions)
        evaluation = evaluate_model(demo / "run", demo / "data", "test")
        abstention = {
            k: evaluation.report["abstention"].get(k)
            for k in ("target", "threshold", "coverage", "accuracy_accepted", "accuracy_accepted_ci")
        }
        abstention["aurc"] = evaluation.report["abstention"]["curve"]["aurc"]
        volume = volumes(predictor, 6 if args.quick else 20)
        real_model: dict[str, Any] = {}
        if real:
            manifest = real_manifest(Path(tmp) / "real.csv")
            overrides = [
                f"data={manifest}",
                "image_size=128",
                "epochs=14",
                "val_fraction=0.15",
                *REDONE_WHOLE,
            ]
            config = load_config(config_path("demo"), [*overrides, *quick])
            train(config, Path(tmp) / "real", progress=False, log=lambda _: None)
            real_predictor = Predictor(Path(tmp) / "real" / "model")
            held_out = [p for p in real if p.parent.parent.name == "test"]
            real_model = flags(real_predictor, images, [])
            real_model["held_out_real"] = _share(real_predictor.predict_files(held_out).predictions)
            real_model["held_out_accuracy"] = evaluate_model(Path(tmp) / "real", manifest, "test").report["accuracy"]
    write_results(
        "ood",
        {
            "quick": args.quick,
            "phantom_model": phantom,
            "real_model": real_model,
            "abstention": abstention,
            "volumes": volume,
        },
        table,
    )
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def table(results: dict[str, Any]) -> str:
    """The docs' tables of an ``ood.json``."""
    phantom, real = results["phantom_model"], results.get("real_model") or {}
    rows = [
        ("41 images that are not OCT B-scans", phantom["non_oct"], real.get("non_oct"), ">= 95%"),
        ("the model's own test phantoms", phantom["own_test_phantoms"], None, "<= 5%"),
        ("307 real OCT2017 scans", phantom.get("real_oct2017"), None, ">= 90% (phantom model)"),
        ("36 held-out real OCT2017 test scans", None, real.get("held_out_real"), "<= 5% (real model)"),
    ]

    def cell(part: dict[str, Any] | None) -> str:
        return "-" if not part else f"{part['flagged']} of {part['n']} ({_pct(part['share'])})"

    lines = [
        "| flagged as unlike the training data | phantom model (demo) | real-scan model | target |",
        "| --- | ---: | ---: | --- |",
        *(f"| {name} | {cell(a)} | {cell(b)} | {target} |" for name, a, b, target in rows),
        "",
        "| kind of non-OCT image | phantom model | real-scan model |",
        "| --- | ---: | ---: |",
        *(
            f"| {kind} | {cell(part)} | {cell((real.get('non_oct_by_kind') or {}).get(kind))} |"
            for kind, part in phantom["non_oct_by_kind"].items()
        ),
        "",
        f"Missed by the phantom model: {', '.join(phantom['non_oct']['missed']) or 'none'}; by the real-scan "
        f"model: {', '.join((real.get('non_oct') or {}).get('missed', [])) or 'none'}. "
        f"The real-scan model's held-out accuracy: {_pct(real.get('held_out_accuracy'))}.",
    ]
    ab = results["abstention"]
    ci = ab.get("accuracy_accepted_ci")
    lines += [
        "",
        "| abstention (demo model, test phantoms) | value |",
        "| --- | ---: |",
        f"| target accuracy on the accepted scans (set on validation) | {_pct(ab['target'])} |",
        f"| confidence threshold chosen on validation | {ab['threshold']:.3f} |",
        f"| coverage on test | {_pct(ab['coverage'])} |",
        f"| accuracy of the accepted test scans (95% CI) | {_pct(ab['accuracy_accepted'])}"
        + (f" ({_pct(ci[0])}-{_pct(ci[1])})" if ci else "")
        + " |",
        f"| area under the risk-coverage curve | {ab['aurc']:.4f} |",
    ]
    vol = results["volumes"]
    lines += [
        "",
        f"| phantom volumes ({vol['volumes_per_size']} per size) | rule `any` | rule `count` |",
        "| --- | ---: | ---: |",
        *(
            f"| normal volume of {n} B-scans called urgent | {_pct(r['any'])} | {_pct(r['count'])} |"
            for n, r in vol["false_urgent"].items()
        ),
        *(
            f"| urgent lesion in {shown} B-scans called urgent | {_pct(r['any'])} | {_pct(r['count'])} |"
            for shown, r in vol["sensitivity"].items()
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
