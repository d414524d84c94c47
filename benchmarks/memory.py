"""Peak resident memory: a training step at batch 32 and 299 px (with and without gradient
checkpointing), and (``--demo``) ``octattn demo``.

Run: ``.venv/bin/python -m benchmarks.memory [--demo]``. Each case runs in its own process
and reports that process's peak resident set size (``ru_maxrss`` of the child), so
nothing measured earlier inflates it. The service's memory under load is measured by
``benchmarks.serve_load``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from typing import Any

from benchmarks.common import write_results

TRAIN_STEP = """
import torch
from torch import nn
from octattn.models import create_model, param_groups
from octattn.training.steps import set_model_mode
model = create_model("inception_v4_attention").to(memory_format=torch.channels_last)
model.set_grad_checkpointing({checkpointing})
optimizer = torch.optim.SGD(param_groups(model, "{policy}"), momentum=0.9)
set_model_mode(model, "train")
x = torch.randn(32, 1, 299, 299).to(memory_format=torch.channels_last)
loss = nn.functional.cross_entropy(model(x), torch.randint(0, 4, (32,)))
loss.backward()
optimizer.step()
"""


# ru_maxrss of RUSAGE_CHILDREN is the largest child so far: each case gets its own
# intermediate process, so no case inherits another's peak.
WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, "
    "stderr=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _child_peak_mib(command: list[str]) -> float:
    out = subprocess.run([sys.executable, "-c", WRAPPER, *command], check=True, capture_output=True, text=True)
    return int(out.stdout.strip()) / 1024  # ru_maxrss is in KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--demo", action="store_true", help="also run the whole demo (about 4 minutes)")
    args = parser.parse_args()
    results = {}
    for policy, checkpointing in (("paper", False), ("all", False), ("paper", True), ("all", True)):
        name = f"training step, batch 32, 299 px, policy {policy}" + (
            ", gradient checkpointing" if checkpointing else ""
        )
        results[name] = _child_peak_mib(
            [sys.executable, "-c", TRAIN_STEP.format(policy=policy, checkpointing=checkpointing)]
        )
    if args.demo:
        with tempfile.TemporaryDirectory() as tmp:
            results["octattn demo"] = _child_peak_mib([sys.executable, "-m", "octattn", "demo", "--out", f"{tmp}/d"])
    write_results("memory", {"peak_rss_mib": results}, table)
    return 0


def table(results: dict[str, Any]) -> str:
    """The docs' table of a ``memory.json``."""
    rows = [f"| {name} | {mib / 1024:.2f} GiB |" for name, mib in results["peak_rss_mib"].items()]
    return "\n".join(["| process (CPU) | peak resident memory |", "| --- | ---: |", *rows])


if __name__ == "__main__":
    sys.exit(main())
