"""Model throughput: training and inference images/s, attention's cost, the paper policy's saving.

Run: ``.venv/bin/python -m benchmarks.models [--quick]``. Same process, same batch,
channels_last, fp32 on CPU (bf16 autocast on CUDA); median of timed steps after warm-up.

Measures, for inception_v4_attention, inception_v4 and inception_v3:
* training images/s (policy "all": every layer trains) and inference images/s, at 299 px
  and at the demo's 91 px, with the attention model's ratio to plain Inception-v4;
* where the attention model's extra training time goes: the modules' share of a step;
* the paper's policy against full fine-tuning: speed, and (torch.profiler) how many
  convolution backward kernels run, i.e. that the backward pass stops at the first
  trainable layer and frozen layers get no weight gradient.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, cast

import torch
from torch import nn

from benchmarks.common import median_time, write_results
from octattn.models import MODEL_NAMES, attention_modules, create_model, param_groups
from octattn.training.steps import set_model_mode


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _batch(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1, size, size, device=_device()).to(memory_format=torch.channels_last)
    return x, torch.randint(0, 4, (n,), device=_device())


def _autocast() -> Any:
    if torch.cuda.is_available():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def training_rate(
    name: str, size: int, batch: int, policy: str = "all", repeats: int = 3, compile: bool = False
) -> float:
    """Training images/s (forward, backward, SGD step), optionally under torch.compile."""
    model = create_model(name).to(_device()).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(param_groups(model, policy), momentum=0.9)
    set_model_mode(model, "train")
    forward = torch.compile(model) if compile else model
    x, y = _batch(batch, size)

    def step() -> None:
        with _autocast():
            loss = nn.functional.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync()

    return batch / median_time(step, repeats=repeats, warmup=2 if compile else 1)


def inference_rate(name: str, size: int, batch: int, repeats: int = 3) -> float:
    """Inference images/s (eval mode, no grad)."""
    model = create_model(name).to(_device()).to(memory_format=torch.channels_last).eval()
    x, _ = _batch(batch, size)

    def step() -> None:
        with torch.no_grad(), _autocast():
            model(x)
        _sync()

    return batch / median_time(step, repeats=repeats, warmup=1)


def attention_share(size: int, batch: int) -> float:
    """Share of a training step spent in the attention modules (forward + backward), timed apart."""
    model = create_model("inception_v4_attention").to(_device()).to(memory_format=torch.channels_last)
    model.train()
    features = cast(nn.Sequential, model.features)
    attention = cast(nn.ModuleDict, model.attention)
    inputs = {}
    with torch.no_grad():
        x, _ = _batch(batch, size)
        for index, block in enumerate(features):
            x = block(x)
            if str(index) in attention:
                inputs[str(index)] = x.clone()
                x = attention[str(index)](x)
    module_time = 0.0
    for key, feature in inputs.items():
        module = attention[key]
        feature.requires_grad_(True)

        def step(m: nn.Module = module, f: torch.Tensor = feature) -> None:
            m(f).sum().backward()
            _sync()

        module_time += median_time(step, repeats=3, warmup=1)
    whole = batch / training_rate("inception_v4_attention", size, batch)
    return module_time / whole


OP_GROUPS = {
    "convolution forward": ("aten::mkldnn_convolution", "aten::cudnn_convolution", "aten::_convolution"),
    "convolution backward": ("aten::convolution_backward",),
    "batch norm (fwd + bwd)": (
        "aten::native_batch_norm",
        "aten::native_batch_norm_backward",
        "aten::cudnn_batch_norm",
        "aten::cudnn_batch_norm_backward",
    ),
    "mask ops: max-pool, bilinear up-sampling, sigmoid, (1+M)*T (fwd + bwd)": (
        "aten::max_pool2d_with_indices",
        "aten::max_pool2d_with_indices_backward",
        "aten::upsample_bilinear2d",
        "aten::upsample_bilinear2d_backward",
        "aten::sigmoid",
        "aten::sigmoid_backward",
        "aten::mul",
        "aten::add",
    ),
}


def op_profile(name: str, size: int, batch: int) -> dict[str, float]:
    """Self time (ms) per operator group in one training step, from torch.profiler."""
    model = create_model(name).to(_device()).to(memory_format=torch.channels_last)
    set_model_mode(model, "train")
    x, y = _batch(batch, size)
    nn.functional.cross_entropy(model(x), y).backward()  # warm-up
    with torch.profiler.profile() as profile:
        nn.functional.cross_entropy(model(x), y).backward()
    averages = {e.key: e.self_cpu_time_total / 1000 for e in profile.key_averages()}
    groups = {group: sum(averages.get(op, 0.0) for op in ops) for group, ops in OP_GROUPS.items()}
    groups["total"] = sum(averages.values())
    return groups


def backward_kernels(policy: str, size: int = 107, batch: int = 4) -> dict[str, int]:
    """Convolution backward kernels in one step (profiler), and parameters given a gradient."""
    model = create_model("inception_v4_attention").to(_device()).to(memory_format=torch.channels_last)
    param_groups(model, policy)
    set_model_mode(model, "train")
    x, y = _batch(batch, size)
    with torch.profiler.profile() as profile:
        nn.functional.cross_entropy(model(x), y).backward()
    kernels = sum(e.count for e in profile.key_averages() if e.key == "aten::convolution_backward")
    convolutions = sum(1 for m in model.modules() if isinstance(m, nn.Conv2d))
    with_grad = sum(1 for p in model.parameters() if p.grad is not None)
    trainable = sum(1 for p in model.parameters() if p.requires_grad)
    return {
        "convolutions": convolutions,
        "convolution_backward_kernels": kernels,
        "parameters_with_grad": with_grad,
        "trainable_parameters": trainable,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="demo size only (a minute on a laptop)")
    args = parser.parse_args()
    torch.manual_seed(0)
    cpu = _device().type == "cpu"
    sizes = [(91, 32, 32)] + ([] if args.quick else [(299, 8 if cpu else 128, 32 if cpu else 256)])
    rates: dict[str, dict[str, dict[str, float]]] = {}
    for size, train_batch, infer_batch in sizes:
        for name in MODEL_NAMES:
            start = time.perf_counter()
            train = training_rate(name, size, train_batch)
            infer = inference_rate(name, size, infer_batch)
            rates.setdefault(str(size), {})[name] = {"train": train, "infer": infer, "train_batch": train_batch}
            seconds = time.perf_counter() - start
            print(f"{name} @ {size}: train {train:.1f} img/s, infer {infer:.1f} img/s ({seconds:.0f} s)")
    demo_size, demo_batch, _ = sizes[0]
    share = attention_share(demo_size, demo_batch)
    policy_size = 107
    paper_rate = training_rate("inception_v4_attention", policy_size, 16, "paper")
    all_rate = training_rate("inception_v4_attention", policy_size, 16, "all")
    kernels = {policy: backward_kernels(policy) for policy in ("paper", "all")}
    ops = {name: op_profile(name, demo_size, demo_batch) for name in ("inception_v4_attention", "inception_v4")}
    write_results(
        "models",
        {
            "rates": rates,
            "attention_modules": len(attention_modules(create_model("inception_v4_attention"))),
            "attention_share_of_step": share,
            "profile_size": demo_size,
            "profile_batch": demo_batch,
            "policy": {"paper": paper_rate, "all": all_rate, "kernels": kernels},
            "op_profile_ms": ops,
        },
        table,
    )
    return 0


def table(results: dict[str, Any]) -> str:
    """The docs' tables of a ``models.json``."""
    rows = []
    for size, by_model in results["rates"].items():
        plain = by_model["inception_v4"]
        for name, r in by_model.items():
            batch = r.get("train_batch", 32 if int(size) < 200 else 8)  # files before the key: 32 at 91 px, 8 at 299
            rows.append(
                f"| {name} | {size} | {batch} | {r['train']:.1f} | {r['train'] / plain['train']:.2f} "
                f"| {r['infer']:.1f} | {r['infer'] / plain['infer']:.2f} |"
            )
    ops = results["op_profile_ms"]
    op_rows = [
        f"| {group} | {ops['inception_v4_attention'][group]:,.0f} | {ops['inception_v4'][group]:,.0f} "
        f"| {ops['inception_v4_attention'][group] - ops['inception_v4'][group]:+,.0f} |"
        for group in ops["inception_v4_attention"]
    ]
    policy, kernels = results["policy"], results["policy"]["kernels"]
    size, batch = results.get("profile_size", 91), results.get("profile_batch", 32)
    return "\n".join(
        [
            "| model | px | train batch | train img/s | x v4 | infer img/s (batch 32) | x v4 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            f"Attention modules ({results['attention_modules']}) take {100 * results['attention_share_of_step']:.0f}% "
            f"of an attention-model training step at {size} px (forward + backward of each module, timed apart).",
            "",
            f"Where the extra time goes (torch.profiler, self time in ms of one training step, {size} px, "
            f"batch {batch}):",
            "",
            "| operators | attention model | inception_v4 | extra |",
            "| --- | ---: | ---: | ---: |",
            *op_rows,
            "",
            "| policy (attention model, 107 px, batch 16) | train img/s | conv backward kernels / step "
            "| params with grad / trainable |",
            "| --- | ---: | ---: | ---: |",
            *(
                f"| {p} | {policy[p]:.1f} | {kernels[p]['convolution_backward_kernels']} of "
                f"{kernels[p]['convolutions']} convs | {kernels[p]['parameters_with_grad']} / "
                f"{kernels[p]['trainable_parameters']} |"
                for p in ("paper", "all")
            ),
            "",
            f"Paper policy speed-up over full fine-tuning: {policy['paper'] / policy['all']:.2f}x.",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
