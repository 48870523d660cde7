"""Run under torchrun: gradients of a tiny model through avsa_train.distributed's DDP wrapper.

Each rank takes its half of a fixed batch; DDP averages the gradients. Rank 0 saves them to argv[1].
"""

import sys

import torch

from avsa_train import distributed as D


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)


if __name__ == "__main__":
    device = torch.device("cpu")
    info = D.setup(device)
    model = D.wrap(tiny_model(), info, device)
    x, y = batch()
    half = len(x) // info.world_size
    xs, ys = x[info.rank * half : (info.rank + 1) * half], y[info.rank * half : (info.rank + 1) * half]
    torch.nn.functional.cross_entropy(model(xs), ys).backward()
    if info.is_main:
        torch.save([p.grad for p in model.parameters()], sys.argv[1])
    D.cleanup(info)
