"""``qwenedit doctor``: what this machine has, which engine configuration fits it, and whether
the configured blob store can be written, read and cleaned."""

from __future__ import annotations

import platform
import secrets
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version

from qwenedit.blobs.factory import open_blob_store
from qwenedit.config import Settings
from qwenedit.domain.hardware import Recommendation, recommend
from qwenedit.errors import ConfigError, StorageError

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


@dataclass(frozen=True)
class StorageReport:
    location: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> tuple[str, str]:
        state = "ok" if self.ok else "FAILED"
        return ("storage", f"{state}: {self.location}: {self.detail}")


async def probe_storage(settings: Settings) -> StorageReport:
    """Check the configured store as ``serve`` does, then write, read back and delete a probe
    object under ``doctor/``."""
    try:
        blobs = open_blob_store(settings)
    except ConfigError as exc:
        return StorageReport(location=settings.storage_url or "", ok=False, detail=str(exc))
    key = f"doctor/probe-{secrets.token_hex(8)}"
    payload = secrets.token_bytes(256)
    try:
        await blobs.check()
        await blobs.put(key, payload)
        try:
            read = await blobs.get(key)
        finally:
            deleted = await blobs.delete_prefix(key)
        if read != payload:
            return StorageReport(blobs.location, False, "the probe object read back differently")
        if deleted != 1 or await blobs.get(key) is not None:
            return StorageReport(blobs.location, False, "the probe object was not deleted")
    except (ConfigError, StorageError, OSError) as exc:
        return StorageReport(blobs.location, False, str(exc))
    finally:
        blobs.close()
    return StorageReport(blobs.location, True, "wrote, read and deleted a probe object")
