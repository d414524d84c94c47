"""Publishing a model on the Hugging Face Hub: ``octattn push MODEL ORG/NAME``.

A bundle is already a timm model folder (``config.json`` + ``model.safetensors``); the
upload adds a model card (``README.md`` in the Hub's format: a YAML header with library,
tags, licence and metrics, then what the model is, its data, its test metrics with their
confidence intervals, its calibration, intended use and limits, and how to load it with
octattn and with timm). Without a token or a network, one line says so.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from octattn.errors import OctattnError
from octattn.evaluation.evaluate import EVALUATION_DIR
from octattn.inference.bundle import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    BundleConfig,
    read_bundle_config,
    resolve_bundle_dir,
    weights_file,
)

CARD_FILE = "README.md"

MODEL_TITLES = {
    "inception_v4_attention": "Inception-v4 with residual attention (Shang et al.)",
    "inception_v4": "Inception-v4 (the paper's baseline)",
    "inception_v3": "Inception-v3 (Kermany et al.'s baseline)",
}


def find_evaluation(model_path: str | Path) -> dict[str, Any] | None:
    """The test metrics of a run (``RUN/evaluation/metrics.json``), when there are any."""
    folder = resolve_bundle_dir(model_path)
    for candidate in (folder.parent / EVALUATION_DIR, folder / EVALUATION_DIR):
        metrics = candidate / "metrics.json"
        if metrics.is_file():
            loaded: dict[str, Any] = json.loads(metrics.read_text())
            return loaded
    return None


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _with_ci(metrics: dict[str, Any], key: str) -> str:
    interval = metrics.get("ci", {}).get(key)
    text = _pct(metrics[key])
    return text + (f" (95% CI {_pct(interval['low'])}-{_pct(interval['high'])})" if interval else "")


def _header(config: BundleConfig, repo_id: str, metrics: dict[str, Any] | None, license_id: str) -> dict[str, Any]:
    header: dict[str, Any] = {
        "library_name": "timm",
        "license": license_id,
        "pipeline_tag": "image-classification",
        "tags": ["image-classification", "timm", "octattn", "medical-imaging", "ophthalmology", "oct"],
    }
    if metrics is not None:
        results = [
            {"type": key, "value": round(100 * float(metrics[key]), 2), "name": f"{key} (test split)"}
            for key in ("accuracy", "f1", "precision", "recall")
            if key in metrics
        ]
        header["model-index"] = [
            {
                "name": repo_id.split("/")[-1],
                "results": [
                    {
                        "task": {"type": "image-classification", "name": "OCT B-scan classification"},
                        "dataset": {"type": "oct2017", "name": str(config.provenance.get("data", "unknown"))},
                        "metrics": results,
                    }
                ],
            }
        ]
    return header


def model_card(model_path: str | Path, repo_id: str, license_id: str = "apache-2.0") -> str:
    """The ``README.md`` of a published model (see the module docstring)."""
    config = read_bundle_config(model_path)
    metrics = find_evaluation(model_path)
    name = str(config.architecture["name"])
    pre = config.preprocess
    provenance = config.provenance
    train_config = provenance.get("config", {})
    lines = [
        "---",
        yaml.safe_dump(_header(config, repo_id, metrics, license_id), sort_keys=False).strip(),
        "---",
        "",
        f"# {repo_id.split('/')[-1]}: retinal OCT B-scan classification",
        "",
        f"{MODEL_TITLES.get(name, name)}, trained with [octattn](https://github.com/octattn/octattn) to sort "
        f"retinal OCT B-scans into {', '.join(config.class_names)}. Input: {pre.in_chans} gray channel(s), resized "
        f"directly to {pre.size[1]}x{pre.size[0]} ({pre.interpolation}), normalised with mean {pre.mean} and std "
        f"{pre.std}.",
        "",
        "## Training data",
        "",
        f"- data: `{provenance.get('data', 'not recorded')}`",
        f"- recipe: policy `{train_config.get('policy', '?')}`, optimizer `{train_config.get('optimizer', '?')}`, "
        f"{train_config.get('epochs', '?')} epochs at {train_config.get('image_size', '?')} px, best epoch "
        f"{provenance.get('epoch', '?')} by validation macro-F1 (patient-grouped validation split)",
        f"- code: octattn {provenance.get('octattn', '?')}, commit `{provenance.get('commit') or 'unknown'}`, "
        f"torch {provenance.get('torch', '?')}, {provenance.get('date', '')}",
        "",
        "## Evaluation",
        "",
    ]
    if metrics is None:
        lines.append("No test evaluation was found beside this model (`octattn evaluate` writes one).")
    else:
        lines += [
            f"On the {metrics.get('split', 'test')} split ({metrics.get('n', '?')} images); intervals are 95% "
            "bootstraps over patients, not images:",
            "",
            "| metric | value |",
            "| --- | --- |",
            *(
                f"| {key} | {_with_ci(metrics, key)} |"
                for key in ("accuracy", "precision", "recall", "f1")
                if key in metrics
            ),
            f"| AUC (macro, one-vs-rest) | {metrics.get('auc_macro', float('nan')):.3f} |",
        ]
        referral = metrics.get("referral")
        if referral:
            lines.append(
                f"| referral ({'/'.join(referral.get('urgent_classes', ['CNV', 'DME']))} urgent) "
                f"sensitivity / specificity | {_pct(referral['sensitivity'])} / "
                f"{_pct(referral['specificity'])} |"
            )
    lines += [
        "",
        "## Calibration",
        "",
        f"Probabilities are a softmax at temperature {config.temperature:.3f}, fitted on the validation split "
        "(Guo et al. 2017)"
        + (
            f", shifted back toward the training set's class frequencies at power {config.prior_power:.2f} "
            "(the class-prior correction of a balanced run, also fitted on validation)"
            if config.prior_power is not None
            else ""
        )
        + (
            f"; expected calibration error on the test split {metrics['ece']:.3f}."
            if metrics and "ece" in metrics
            else "."
        ),
        "Referral tiers: " + ", ".join(f"{name} {tier or 'none'}" for name, tier in config.referral.items()) + ".",
        "",
        "## Intended use and limits",
        "",
        "- A research tool, **not a medical device**: it is not cleared for diagnosis or for deciding care.",
        "- The public OCT2017 data set (Kermany et al. 2018) holds scans of the same patients in its train and test "
        "splits; accuracies measured on its test split are optimistic. octattn's `data audit` lists the overlap.",
        "- Trained on macular B-scans of one device family; other devices, scan patterns (circular RNFL scans) and "
        "diseases outside the four classes are out of scope.",
        "",
        "## How to use",
        "",
        "With octattn (pre-processing, calibration and referral tier included):",
        "",
        "```bash",
        f"octattn predict hf-hub:{repo_id} scans/ --out predictions.csv",
        "```",
        "",
        "With timm alone (`pip install octattn` registers the architecture):",
        "",
        "```python",
        "import octattn, timm, torch",
        "from timm.data import resolve_data_config, create_transform",
        "",
        f'model = timm.create_model("hf-hub:{repo_id}", pretrained=True).eval()  # pretrained: load the weights',
        "transform = create_transform(**resolve_data_config({}, model=model))  # 1 channel, squash resize",
        "```",
        "",
        f"Model: `{name}`, {config.architecture.get('num_classes', len(config.class_names))} classes "
        f"({', '.join(config.class_names)}); weights in `{WEIGHTS_FILE}` (safetensors).",
        "",
    ]
    return "\n".join(lines)


def stage_upload(model_path: str | Path, repo_id: str, out_dir: Path, license_id: str = "apache-2.0") -> Path:
    """Write the folder that ``push`` uploads: config, weights and the model card."""
    folder = resolve_bundle_dir(model_path)
    config = read_bundle_config(folder)
    if config.ensemble:  # the Hub loader fetches one config and one weights file
        raise OctattnError(f"{folder}: an ensemble bundle cannot be pushed as one Hub model; push each member")
    out_dir.mkdir(parents=True, exist_ok=True)
    # Always the current layout, also for a bundle written before it (version 1).
    (out_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1))
    shutil.copyfile(weights_file(folder), out_dir / WEIGHTS_FILE)
    (out_dir / CARD_FILE).write_text(model_card(folder, repo_id, license_id))
    return out_dir


def push_model(
    model_path: str | Path,
    repo_id: str,
    private: bool = False,
    token: str | None = None,
    license_id: str = "apache-2.0",
) -> str:
    """Upload a bundle with its model card to the Hub; returns the repository's address.

    Raises:
        OctattnError: a bad repository name, no token, or the Hub cannot be reached.
    """
    from huggingface_hub import HfApi, get_token

    from octattn.hub import hub_endpoint, hub_reachable

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise OctattnError(f"{repo_id}: a Hub repository is named ORG/NAME")
    token = token or get_token()
    if not token:
        raise OctattnError("no Hugging Face token: run `huggingface-cli login` or set HF_TOKEN, then push again")
    if not hub_reachable():
        raise OctattnError(f"cannot push {repo_id}: {hub_endpoint()} cannot be reached (no network?)")
    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="octattn-push-") as staging:
        folder = stage_upload(model_path, repo_id, Path(staging), license_id)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            api.upload_folder(
                folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message="octattn push"
            )
        except Exception as exc:  # the hub raises many types: auth, permissions, HTTP
            raise OctattnError(f"cannot push {repo_id}: {' '.join(str(exc).split())[:200]}") from exc
    return f"{hub_endpoint()}/{repo_id}"
