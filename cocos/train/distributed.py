"""Process-group helpers for multi-process training (torchrun launches one process per device).

Rank and world size come from the initialised process group, else from torchrun's environment
(RANK, WORLD_SIZE), else a single process. DeepSpeed configs live in cocos/train/deepspeed/ in the
Hugging Face integration style: "auto" marks values the trainer fills (`resolve_deepspeed_config`
does it for the RLOO trainer, the HF Trainer does it for SFT).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

T = TypeVar("T")
DEEPSPEED_DIR = Path(__file__).resolve().parent / "deepspeed"
ZERO_STAGES = (2, 3)


def deepspeed_config_path(stage: int) -> str:
    """Path of the packaged ZeRO-`stage` config (2 or 3)."""
    if stage not in ZERO_STAGES:
        raise ValueError(f"deepspeed ZeRO stage={stage}: configs exist for stages {ZERO_STAGES}; use 2 or 3")
    return str(DEEPSPEED_DIR / f"zero{stage}.json")


def is_distributed() -> bool:
    """True when a torch.distributed process group is initialised."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    if is_distributed():
        return torch.distributed.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    if is_distributed():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Join the process group that torchrun describes in the environment; a no-op for one process.

    backend: nccl on CUDA, else gloo. Returns whether the process runs distributed.
    """
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    torch.distributed.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    log.info("rank %d of %d joined the process group (%s)", rank(), world_size(), backend)
    return True


def init_single_process(backend: str | None = None) -> None:
    """A process group of one (DeepSpeed needs a group even for a single process)."""
    import socket

    if is_distributed():
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
    torch.distributed.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def shard(items: Sequence[T], rank: int, world: int) -> list[T]:
    """The contiguous block of `items` that `rank` of `world` owns; block sizes differ by at most one.

    Contiguous blocks keep an RLOO group (the k samples of one prompt) on one rank.
    """
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard: rank={rank} must be in [0, world={world})")
    base, extra = divmod(len(items), world)
    start = rank * base + min(rank, extra)
    return list(items[start : start + base + (1 if rank < extra else 0)])


def all_gather_objects(value: T) -> list[T]:
    """Every rank's `value`, in rank order (a list of one item without a process group)."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: T, src: int = 0) -> T:
    if not is_distributed():
        return value
    box: list[Any] = [value]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_max(value: int) -> int:
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=_collective_device())
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    return int(tensor.item())


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def average_gradients(parameters: Sequence[torch.nn.Parameter], bucket_elements: int = 50_000_000) -> None:
    """Replace each gradient by its mean over ranks (what DDP does), in flattened buckets per dtype."""
    if not is_distributed() or world_size() == 1:
        return
    world = world_size()
    grads = [p.grad for p in parameters if p.grad is not None]
    by_dtype: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault((grad.dtype, grad.device), []).append(grad)
    for group in by_dtype.values():
        bucket: list[torch.Tensor] = []
        size = 0
        for grad in [*group, None]:
            if grad is not None:
                bucket.append(grad)
                size += grad.numel()
            if bucket and (grad is None or size >= bucket_elements):
                flat = torch.cat([g.reshape(-1) for g in bucket])  # (bucket_elements,)
                torch.distributed.all_reduce(flat)
                flat /= world
                offset = 0
                for g in bucket:
                    g.copy_(flat[offset : offset + g.numel()].view_as(g))
                    offset += g.numel()
                bucket, size = [], 0


def broadcast_parameters(module: torch.nn.Module, src: int = 0) -> None:
    """Make every rank start from rank `src`'s weights (DDP does the same at construction)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            torch.distributed.broadcast(tensor.data, src=src)


def resolve_deepspeed_config(
    path: str | Path,
    *,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    world: int,
    bf16: bool,
    gradient_clipping: float = 1.0,
    hidden_size: int | None = None,
) -> dict[str, Any]:
    """Load a DeepSpeed JSON and fill its "auto" values as the HF integration would.

    train_batch_size = micro_batch_size x gradient_accumulation_steps x world (DeepSpeed checks it).
    An "auto" left without a rule is dropped, so DeepSpeed's own default applies.
    """
    config = json.loads(Path(path).read_text())
    if "optimizer" in config or "scheduler" in config:
        raise ValueError(
            f"{path}: the RLOO trainer brings its own AdamW and LR schedule; remove the 'optimizer' and "
            "'scheduler' sections from the DeepSpeed config"
        )
    filled: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * world,
        "gradient_clipping": gradient_clipping,
    }
    for key, value in filled.items():
        if config.get(key, "auto") == "auto":
            config[key] = value
    if config.get("bf16", {}).get("enabled") == "auto":
        config["bf16"]["enabled"] = bf16
    if config.get("fp16", {}).get("enabled") == "auto":
        config["fp16"]["enabled"] = False
    zero = config.get("zero_optimization", {})
    if hidden_size:
        sizes = {
            "reduce_bucket_size": hidden_size * hidden_size,
            "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
            "stage3_param_persistence_threshold": 10 * hidden_size,
        }
        for key, value in sizes.items():
            if zero.get(key) == "auto":
                zero[key] = value
    for key in [k for k, v in zero.items() if v == "auto"]:
        del zero[key]
    for key in [k for k, v in config.items() if v == "auto"]:
        del config[key]
    return config
