"""ONNX export (dynamic batch) and an onnxruntime backend with the Predictor's interface.

The exported graph takes the normalised input ``(N, C, H, W)`` and returns logits; the
bundle's pre-processing and temperature still apply around it, so ``predict --backend
onnxruntime`` gives the same classes and calibrated probabilities as PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from octattn.errors import OctattnError
from octattn.inference.bundle import load_bundle, read_bundle_config
from octattn.inference.predictor import Predictor
from octattn.io import atomic_path

OPSET = 18


def export_onnx(model_path: str | Path, out_path: str | Path, opset: int = OPSET) -> Path:
    """Export a bundle's model to ONNX with a dynamic batch dimension (atomically)."""
    model, config = load_bundle(model_path)
    height, width = config.preprocess.size
    example = torch.zeros(2, config.preprocess.in_chans, height, width)
    out = Path(out_path)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(out) as tmp:
        torch.onnx.export(
            model,
            (example,),
            str(tmp.with_suffix(".onnx")),
            input_names=["scan"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file; the weights are far below protobuf's 2 GB
            verbose=False,
        )
        tmp.with_suffix(".onnx").replace(tmp)
    return out


class OnnxPredictor(Predictor):
    """A :class:`Predictor` whose forward pass runs in onnxruntime (no PyTorch model)."""

    def __init__(self, model_path: str | Path, onnx_path: str | Path, tta: bool = False) -> None:
        # Only the bundle's JSON is read: pre-processing, class names, temperature.
        self._setup(read_bundle_config(model_path), torch.device("cpu"), tta)
        try:
            import onnxruntime
        except ImportError as exc:  # an optional dependency
            raise OctattnError("onnxruntime is not installed: pip install 'octattn[onnx]'") from exc
        if not Path(onnx_path).is_file():
            raise OctattnError(f"{onnx_path}: no ONNX file (make one with `octattn export MODEL --format onnx OUT`)")
        self.session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """One pass in onnxruntime: logits ``(N, K)`` (TTA is handled by the base class)."""
        inputs = {"scan": np.ascontiguousarray(batch.numpy(), dtype=np.float32)}
        return np.asarray(self.session.run(["logits"], inputs)[0])
