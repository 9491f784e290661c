"""``qwenedit doctor``: what this machine has and which engine configuration fits it."""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version

from qwenedit.domain.hardware import Recommendation, recommend

GIB = 1024**3
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    total_gb: float
    free_gb: float


@dataclass(frozen=True)
class MachineReport:
    python: str
    versions: dict[str, str]
    gpus: list[GpuInfo]
    recommendation: Recommendation

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[tuple[str, str]]:
        rows = [("python", self.python)]
        rows += [(name, found) for name, found in self.versions.items()]
        if not self.gpus:
            rows.append(("device", "cpu (no CUDA GPU found)"))
        for index, gpu in enumerate(self.gpus):
            rows.append(
                (
                    f"cuda:{index}",
                    f"{gpu.name}, {gpu.free_gb:.1f} GB free of {gpu.total_gb:.1f} GB",
                )
            )
        rows.append(("recommended", "qwenedit serve " + " ".join(self.recommendation.flags)))
        rows.append(("why", self.recommendation.reason))
        return rows


def _versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _gpus() -> list[GpuInfo]:
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for index in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        gpus.append(GpuInfo(name=name, total_gb=total / GIB, free_gb=free / GIB))
    return gpus


def inspect_machine() -> MachineReport:
    gpus = _gpus()
    largest = max((gpu.total_gb for gpu in gpus), default=None)
    return MachineReport(
        python=platform.python_version(),
        versions=_versions(),
        gpus=gpus,
        recommendation=recommend(largest),
    )
