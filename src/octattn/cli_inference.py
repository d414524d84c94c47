"""The inference sub-commands of ``octattn`` (predict, explain, explain-eval, export, push,
serve) and the options they share with ``evaluate``: parsing and printing only."""

from __future__ import annotations

import argparse
import sys


def add_precision(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """``--precision auto|fp32|bf16`` (commands that evaluate default to fp32: one default for
    them all, :data:`octattn.precision.EVALUATION_PRECISION`)."""
    meaning = {
        "auto": "auto (default): bf16 where the CPU or GPU computes it natively, else fp32",
        "fp32": "fp32 (default, the same on every machine), bf16, or auto (bf16 where native)",
    }
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=default, help=meaning[default])


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--backend``, ``--onnx`` and ``--allow-ood``: how a model runs."""
    add_precision(parser)
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    parser.add_argument("--onnx", help="the ONNX file for --backend onnxruntime (fp32 or int8 from export)")
    parser.add_argument(
        "--allow-ood",
        action="store_true",
        help="give a class and referral even to scans flagged as unlike the training data (still flagged)",
    )


def _cmd_predict_ray(args: argparse.Namespace) -> int:
    from octattn.errors import OctattnError
    from octattn.inference.archive import predict_archive

    if not args.out:
        raise OctattnError("--engine ray needs --out FOLDER (Parquet shards are written there)")
    summary = predict_archive(
        args.model,
        args.paths,
        args.out,
        address=args.address,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        batch_size=args.batch,
        backend=args.backend,
        onnx=args.onnx,
        precision=args.precision,
        allow_ood=args.allow_ood,
        csv=args.csv,
        files_per_task=args.files_per_task,
    )
    return 1 if summary.failures else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return _cmd_predict_ray(args)
    from octattn.inference.batch import predict_paths
    from octattn.inference.inputs import expand_inputs
    from octattn.inference.onnx_export import make_predictor

    predictor = make_predictor(
        args.model, args.backend, args.onnx, args.precision, tta=args.tta, allow_ood=args.allow_ood
    )
    if predictor.ood is None:
        print("this bundle has no out-of-distribution detector (octattn fit-ood adds one): the ood column is empty")
    run = predict_paths(predictor, expand_inputs(args.paths), args.batch)
    for line in run.table():
        print(line)
    for item in run.not_predicted:
        print(f"not predicted: {item.source}: {item.reason}", file=sys.stderr)
    if args.out:
        print(f"written to {run.write(args.out)}")
    print(run.summary())
    return 1 if run.not_predicted else 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from octattn.explain.run import explain_images
    from octattn.inference.inputs import expand_inputs

    written, failures = explain_images(args.model, expand_inputs(args.images), args.out, precision=args.precision)
    for path, spread in written:
        print(f"{path} (contrast {spread:.3f} on a fixed 0-1 scale: a flat map looks flat)")
    for failure in failures:
        print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _cmd_explain_eval(args: argparse.Namespace) -> int:
    import json

    from octattn.explain.run import explain_eval, format_explain_eval
    from octattn.io import atomic_write_text

    result = explain_eval(args.model, args.phantoms, args.split, args.limit)
    print(format_explain_eval(result))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from octattn.inference.onnx_export import export_onnx

    path = export_onnx(args.model, args.out, quantize=args.quantize, calibration=args.calibration)
    kind = "int8 (QDQ, per-channel weights)" if args.quantize else "fp32"
    print(f"ONNX model written to {path}: {kind}; input 'scan' N x C x H x W, output 'logits'; dynamic batch")
    return 0


def _fit_safety_on_data(
    model: str, args: argparse.Namespace, held_out: set[str] | None = None, required: bool = True
) -> None:
    """Fit the detector and the operating points of ``model`` on ``args.data`` (fit-ood's
    options), and say what was fitted. ``held_out``: the validation scans (by
    :func:`~octattn.inference.ensemble.sample_key`; looked for in ``--split`` and in the data's
    own ``val`` split) instead of a new patient-grouped split;
    where ``--data`` holds none of them, an error if ``required``, else a new split (other
    data than the model's, none of it trained on)."""
    from octattn.data.layout import load_samples
    from octattn.data.splits import patient_split
    from octattn.errors import DataError
    from octattn.inference.bundle import read_bundle_config
    from octattn.inference.ensemble import sample_key
    from octattn.inference.safety import SafetySettings, fit_safety

    classes = read_bundle_config(model).class_names
    samples = load_samples(args.data, args.split, classes)
    if held_out is not None and args.split != "val":
        # a run trained with the data's own val split (val_fraction 0) held out those scans
        try:
            named = {s.path for s in samples}
            samples += [s for s in load_samples(args.data, "val", classes) if s.path not in named]
        except DataError:
            pass  # no val split: the held-out scans, if any, are among --split's
    unseen = held_out or set()
    validation = [s for s in samples if sample_key(s.path) in unseen]
    if held_out is not None and not validation:
        if required:
            raise DataError(f"{args.data}: none of the members' validation scans is in it (pass their training data)")
        print("--data holds none of the run's validation scans: a new patient-grouped share is held out")
    if validation:
        train = [s for s in samples if sample_key(s.path) not in unseen]
    else:
        train, validation = patient_split(samples, args.val_fraction, args.seed)
    settings = SafetySettings(
        abstain_target_accuracy=args.abstain_target_accuracy, urgent_sensitivity=args.urgent_sensitivity
    )
    fitted = fit_safety(model, train, validation, settings, args.seed)
    print(
        f"detector fitted on {len(train)} images, threshold {fitted['threshold']:.2f} chosen on {len(validation)} "
        f"held-out images of {len({s.group for s in validation})} patients (keeps "
        f"{100 * fitted['validation_kept']:.0f}%); written into {model}"
    )


def _cmd_fit_ood(args: argparse.Namespace) -> int:
    from octattn.inference.ensemble import shared_validation

    # A run folder knows which scans it never trained on: the threshold and the operating points
    # are chosen there, as training chose them. A new share of the run's own data would hold
    # scans the network has fitted, more confident than any new scan, and flatter both.
    held_out = shared_validation([args.model])
    if held_out is None:
        print(
            "a bundle without its run's split.json: a new patient-grouped share of --data is held out; if the "
            "model trained on these scans, its threshold and operating points are optimistic"
        )
    _fit_safety_on_data(args.model, args, held_out, required=False)
    return 0


def _cmd_ensemble(args: argparse.Namespace) -> int:
    from octattn.inference.ensemble import build_ensemble, describe_members, shared_validation

    held_out = shared_validation(args.models) if args.data else None  # checked before anything is written
    config = build_ensemble(args.models, args.out, overwrite=args.overwrite)
    print(f"ensemble written to {args.out}: {describe_members(config)}; mean of calibrated probabilities")
    if args.data:
        if held_out is None:
            print(
                "the members are bundles without their runs' split.json: the operating points are chosen on a new "
                "patient-grouped share of --data, which a member may have trained on (optimistic)"
            )
        _fit_safety_on_data(args.out, args, held_out)
    else:
        print(
            "its operating points (abstention, urgent referral) are chosen on the ensemble's own probabilities: "
            f"run `octattn fit-ood {args.out} --data DATA` (the members' training data) to set them"
        )
    return 0


def _cmd_adapt(args: argparse.Namespace) -> int:
    from octattn.inference.adapt import adapt_bundle
    from octattn.inference.inputs import expand_inputs

    scans = expand_inputs(args.scans)
    summary = adapt_bundle(
        args.model, scans, args.out, batch_size=args.batch, overwrite=args.overwrite, source=" ".join(args.scans)
    )
    for failure in summary.unreadable:
        print(f"not used: {failure}", file=sys.stderr)
    print(
        f"adapted bundle written to {summary.out_dir}: BatchNorm statistics from {summary.images} unlabeled scan(s)"
        f"{f', {len(summary.unreadable)} unreadable' if summary.unreadable else ''}; its detector and operating "
        f"points were fitted on the old statistics and are dropped (`octattn fit-ood {summary.out_dir} --data DIR` "
        "fits them again on labelled scans of this device)"
    )
    return 1 if summary.unreadable else 0


def _add_fit_options(parser: argparse.ArgumentParser, data_required: bool) -> None:
    """fit-ood's options: the data and the targets of the operating points."""
    parser.add_argument("--data", required=data_required, help="the images the model was trained on (folder or CSV)")
    parser.add_argument("--split", default="train", help="the split to fit on (default train)")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="patient-grouped share held out (0.2)")
    parser.add_argument("--abstain-target-accuracy", type=float, default=0.99, help="(default 0.99)")
    parser.add_argument("--urgent-sensitivity", type=float, default=0.95, help="(default 0.95)")
    parser.add_argument("--seed", type=int, default=0)


def _cmd_push(args: argparse.Namespace) -> int:
    from octattn.inference.publish import push_model

    url = push_model(args.model, args.repo, private=args.private, license_id=args.license)
    print(f"pushed {args.model} to {url} (load it with `octattn predict hf-hub:{args.repo} ...`)")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging
    import os

    import uvicorn

    from octattn.serve.app import TOKEN_ENV, check_bind, create_app

    token = args.token or os.environ.get(TOKEN_ENV) or None
    check_bind(args.host, token, args.allow_unauthenticated)
    app = create_app(
        args.model,
        max_upload_bytes=args.max_upload_mb * 1024 * 1024,
        token=token,
        precision=args.precision,
        backend=args.backend,
        onnx_path=args.onnx,
        allow_ood=args.allow_ood,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    access = "token required" if token else "no token (open to anyone who reaches the port)"
    print(f"serving {args.model} on http://{args.host}:{args.port} ({access}; {app.state.engine})")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


def add_inference_commands(sub: argparse._SubParsersAction) -> None:
    """Register predict, explain, explain-eval, export, fit-ood, ensemble, adapt, push and serve."""
    predict = sub.add_parser("predict", help="classify scans (files, folders, globs, DICOM/.vol/.e2e volumes)")
    predict.add_argument("model", help="a model bundle, a run folder, local-dir:FOLDER or hf-hub:ORG/NAME")
    predict.add_argument("paths", nargs="+", help="image files, folders, glob patterns or volume files")
    predict.add_argument(
        "--out", help="write the predictions to FILE.csv or FILE.json (with --engine ray: a folder of Parquet shards)"
    )
    predict.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    predict.add_argument("--tta", action="store_true", help="average with the horizontally flipped scan")
    add_engine_options(predict)
    predict.add_argument("--verbose", action="store_true", help="also show the volume readers' own log lines")
    predict.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="local (one process) or ray (an archive, on Ray)"
    )
    predict.add_argument("--address", help="with --engine ray: the Ray cluster to join (default: start one here)")
    predict.add_argument("--workers", type=int, default=2, help="with --engine ray: model actors (default 2)")
    predict.add_argument("--gpus-per-worker", type=float, default=0.0, help="with --engine ray: GPUs per actor")
    predict.add_argument("--csv", action="store_true", help="with --engine ray: also write OUT/predictions.csv")
    predict.add_argument(
        "--files-per-task", type=int, default=64, help="with --engine ray: input files per task and shard (default 64)"
    )
    predict.set_defaults(handler=_cmd_predict)

    explain = sub.add_parser("explain", help="attention masks and Grad-CAM over scans, as PNG overlays")
    explain.add_argument("model")
    explain.add_argument("images", nargs="+")
    explain.add_argument("--out", required=True, help="output folder")
    add_precision(explain)
    explain.set_defaults(handler=_cmd_explain)

    explain_eval = sub.add_parser("explain-eval", help="score attention and Grad-CAM localisation on phantoms")
    explain_eval.add_argument("model")
    explain_eval.add_argument("phantoms", help="a phantom folder from `octattn data synth` (with masks/)")
    explain_eval.add_argument("--split", default="test")
    explain_eval.add_argument("--limit", type=int, default=0, help="score at most this many phantoms")
    explain_eval.add_argument("--json", help="also write the scores as JSON")
    explain_eval.set_defaults(handler=_cmd_explain_eval)

    export = sub.add_parser("export", help="export a model bundle (ONNX, dynamic batch)")
    export.add_argument("model")
    export.add_argument("out", help="output .onnx file")
    export.add_argument("--format", choices=["onnx"], default="onnx")
    export.add_argument("--quantize", choices=["int8"], help="static int8 quantization with onnxruntime")
    export.add_argument("--calibration", help="folder of real scans for --quantize int8 (64 are read)")
    export.set_defaults(handler=_cmd_export)

    fit_ood = sub.add_parser(
        "fit-ood",
        help="add an out-of-distribution detector and operating points to an existing bundle",
        description="Fit the detector on DATA's images and write it into the bundle. The threshold and the "
        "operating points are chosen on the scans a run folder held out (its split.json), else on a "
        "patient-grouped share of DATA.",
    )
    fit_ood.add_argument("model", help="a model bundle or a run folder (written in place)")
    _add_fit_options(fit_ood, data_required=True)
    fit_ood.set_defaults(handler=_cmd_fit_ood)

    ensemble = sub.add_parser(
        "ensemble",
        help="several trained models (seeds) as one bundle: the mean of their calibrated probabilities",
        description="Copy MODELS into one ensemble bundle that predict, evaluate, serve and export run as one "
        "model. With --data, its detector threshold and operating points are chosen on its own probabilities.",
    )
    ensemble.add_argument("models", nargs="+", help="two or more bundles or run folders with the same classes")
    ensemble.add_argument("--out", required=True, help="the ensemble bundle's folder")
    ensemble.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    _add_fit_options(ensemble, data_required=False)
    ensemble.set_defaults(handler=_cmd_ensemble)

    adapt = sub.add_parser(
        "adapt",
        help="re-estimate a model's BatchNorm statistics on unlabeled scans of another device (AdaBN)",
        description="Write a copy of MODEL whose BatchNorm statistics come from SCANS (no labels, no weight "
        "changed); its detector and operating points are dropped.",
    )
    adapt.add_argument("model", help="a model bundle or a run folder (not an ensemble)")
    adapt.add_argument("scans", nargs="+", help="unlabeled scans of the new device: files, folders or globs")
    adapt.add_argument("--out", required=True, help="the adapted bundle's folder")
    adapt.add_argument("--batch", type=int, default=32, help="images per BatchNorm batch (default 32)")
    adapt.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    adapt.set_defaults(handler=_cmd_adapt)

    push = sub.add_parser("push", help="publish a model bundle with a model card on the Hugging Face Hub")
    push.add_argument("model", help="a model bundle or a run folder")
    push.add_argument("repo", help="the Hub repository, ORG/NAME")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    push.add_argument("--license", default="apache-2.0", help="licence in the model card (default apache-2.0)")
    push.set_defaults(handler=_cmd_push)

    serve = sub.add_parser("serve", help="HTTP service with a page (FastAPI + uvicorn)")
    serve.add_argument("model")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-upload-mb", type=int, default=20, help="largest upload in MiB (default 20)")
    add_engine_options(serve)
    serve.add_argument(
        "--token", help="bearer token every request but /healthz must carry (better: the OCTATTN_TOKEN variable)"
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve beyond this machine without a token (only behind a proxy that authenticates)",
    )
    serve.set_defaults(handler=_cmd_serve)
