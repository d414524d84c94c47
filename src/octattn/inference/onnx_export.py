"""ONNX export (dynamic batch, fp32 or int8) and an onnxruntime backend with the Predictor's interface.

The exported graph takes the normalised input ``(N, C, H, W)`` and returns logits; the
bundle's pre-processing and temperature still apply around it, so ``predict --backend
onnxruntime`` gives the same classes and calibrated probabilities as PyTorch.

int8 (``export --quantize int8 --calibration DIR``) is onnxruntime's own static
quantization: QDQ format, per-channel int8 weights, activations calibrated on real scans
from DIR through the bundle's own pre-processing. CPUs with VNNI run its convolutions as
int8 dot products.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from octattn.errors import OctattnError
from octattn.inference.bundle import load_bundle, read_bundle_config
from octattn.inference.ood import LogitsAndFeatures
from octattn.inference.predictor import Predictor
from octattn.io import atomic_path

OPSET = 18


CALIBRATION_SCANS = 64
"""Scans the int8 calibration reads by default (spread evenly over the folder's files)."""


def export_onnx(
    model_path: str | Path,
    out_path: str | Path,
    opset: int = OPSET,
    quantize: str | None = None,
    calibration: str | Path | None = None,
    calibration_scans: int = CALIBRATION_SCANS,
) -> Path:
    """Export a bundle's model to ONNX with a dynamic batch dimension (atomically).

    Args:
        model_path: the bundle.
        out_path: the ``.onnx`` file to write.
        opset: ONNX opset.
        quantize: ``None`` (fp32) or ``"int8"`` (static QDQ quantization; needs ``calibration``).
        calibration: a folder (or files) of real scans for the int8 activation ranges.
        calibration_scans: at most this many scans are read.

    Raises:
        OctattnError: int8 without scans, a folder with no readable scan, a bad option.
    """
    if quantize not in (None, "int8"):
        raise OctattnError(f"unknown quantization {quantize!r}; expected int8")
    if quantize is None:
        return _export_fp32(model_path, out_path, opset)
    if calibration is None:
        raise OctattnError("--quantize int8 needs --calibration DIR: real scans to measure activation ranges on")
    scans = calibration_batches(model_path, calibration, calibration_scans)
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="octattn-int8-") as work:
        fp32 = _export_fp32(model_path, Path(work) / "fp32.onnx", opset)
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        # Quantising writes a third copy (onnxruntime's calibration graph, in its own temporary
        # folder): the fp32 export has served, and one model-sized file less is on the disk then.
        fp32.unlink()
        with atomic_path(out) as tmp:
            quantize_static(
                str(prepared),
                str(tmp.with_suffix(".onnx")),
                _ScanReader(scans),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
            tmp.with_suffix(".onnx").replace(tmp)
    return out


def calibration_batches(model_path: str | Path, source: str | Path, limit: int = CALIBRATION_SCANS) -> list[np.ndarray]:
    """Up to ``limit`` scans from ``source``, each a ``(1, C, H, W)`` float32 input as the
    bundle's pre-processing makes it.

    Raises:
        OctattnError: no readable scan in ``source``.
    """
    from octattn.data.decode import load_scan
    from octattn.data.transforms import eval_transform
    from octattn.errors import BadImageError
    from octattn.inference.inputs import expand_inputs

    config = read_bundle_config(model_path)
    transform = eval_transform(config.preprocess)
    height, width = config.preprocess.size
    files = expand_inputs([source])
    step = max(1, len(files) // max(limit, 1))
    batches = []
    for path in files[::step]:
        try:
            gray = load_scan(path, (width, height))
        except BadImageError:
            continue
        batches.append(transform(gray)[None].numpy().astype(np.float32))
        if len(batches) >= limit:
            break
    if not batches:
        raise OctattnError(f"{source}: no readable scans to calibrate the int8 model on ({len(files)} file(s) tried)")
    return batches


class _ScanReader:
    """onnxruntime's calibration data reader over prepared scans."""

    def __init__(self, batches: list[np.ndarray]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"scan": batch}


def _export_fp32(model_path: str | Path, out_path: str | Path, opset: int) -> Path:
    model, config = load_bundle(model_path)
    height, width = config.preprocess.size
    example = torch.zeros(2, config.preprocess.in_chans, height, width)
    out = Path(out_path)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with atomic_path(out) as tmp:
        torch.onnx.export(
            LogitsAndFeatures(model).eval(),  # the detector's features ride along: ood works in onnxruntime too
            (example,),
            str(tmp.with_suffix(".onnx")),
            input_names=["scan"],
            output_names=["logits", "features"],
            dynamic_shapes={"x": {0: batch}},
            opset_version=opset,
            dynamo=True,
            external_data=False,  # one self-contained file; the weights are far below protobuf's 2 GB
            verbose=False,
        )
        tmp.with_suffix(".onnx").replace(tmp)
    return out


def onnx_threads(threads: int = 0) -> int:
    """The intra-op threads an onnxruntime session gets: ``threads`` where it is positive, else
    ``OMP_NUM_THREADS`` where that is set to a positive whole number (PyTorch honours it and
    onnxruntime does not: a process told to use one core took them all, and two such processes
    on two cores slowed each other several-fold), else 0, onnxruntime's default (every core)."""
    if threads > 0:
        return threads
    told = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(told) if told.isdigit() and int(told) > 0 else 0


class OnnxPredictor(Predictor):
    """A :class:`Predictor` whose forward pass runs in onnxruntime (no PyTorch model)."""

    def __init__(
        self,
        model_path: str | Path,
        onnx_path: str | Path,
        tta: bool = False,
        allow_ood: bool = False,
        threads: int = 0,
    ) -> None:
        # Only the bundle's JSON is read: pre-processing, class names, temperature. The
        # graph's own types decide its precision (fp32, or int8 from `export --quantize`).
        self._setup(
            read_bundle_config(model_path), torch.device("cpu"), tta, model_path=model_path, allow_ood=allow_ood
        )
        try:
            import onnxruntime
        except ImportError as exc:  # an optional dependency
            raise OctattnError("onnxruntime is not installed: pip install 'octattn[onnx]'") from exc
        if not Path(onnx_path).is_file():
            raise OctattnError(f"{onnx_path}: no ONNX file (make one with `octattn export MODEL --format onnx OUT`)")
        options = onnxruntime.SessionOptions()
        threads = onnx_threads(threads)
        if threads > 0:  # several workers on one machine: each its share of the cores, not all of them
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        if "features" not in {o.name for o in self.session.get_outputs()}:
            self.ood = None  # exported before the features output: no detector in this backend

    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """One pass in onnxruntime: logits ``(N, K)`` (TTA is handled by the base class)."""
        inputs = {"scan": np.ascontiguousarray(batch.numpy(), dtype=np.float32)}
        return np.asarray(self.session.run(["logits"], inputs)[0])

    def forward_features(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Logits and the pooled stage features, from the graph's two outputs."""
        inputs = {"scan": np.ascontiguousarray(batch.numpy(), dtype=np.float32)}
        logits, features = self.session.run(["logits", "features"], inputs)
        return np.asarray(logits), np.asarray(features)


def make_predictor(
    model_path: str | Path,
    backend: str = "torch",
    onnx_path: str | Path | None = None,
    precision: str = "auto",
    tta: bool = False,
    allow_ood: bool = False,
    threads: int = 0,
) -> Predictor:
    """The predictor a command asked for: PyTorch at a precision, or an ONNX file in onnxruntime.

    Raises:
        OctattnError: onnxruntime without ``onnx_path``, or bf16 asked of onnxruntime.
    """
    if backend == "onnxruntime":
        if onnx_path is None:
            raise OctattnError("--backend onnxruntime needs --onnx FILE.onnx")
        if precision == "bf16":
            raise OctattnError("bf16 runs in the torch backend; for onnxruntime export with --quantize int8")
        return OnnxPredictor(model_path, onnx_path, tta=tta, allow_ood=allow_ood, threads=threads)
    if backend != "torch":
        raise OctattnError(f"unknown backend {backend!r}; expected torch or onnxruntime")
    return Predictor(model_path, tta=tta, precision=precision, allow_ood=allow_ood)
