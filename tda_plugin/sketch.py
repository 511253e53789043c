"""Gradient sketches: short random projections of Fisher-preconditioned gradients.

To first order the unlearning score of segment i is  τ_i ≈ g_iᵀ Δ  with  Δ = (α/N)(F+λI)^-1 g_q
(docs/method.md). Writing u_i = (F+λI)^-1/2 g_i and w = (F+λI)^1/2 Δ, τ_i ≈ u_iᵀ w, and the default
"self"-normalised score τ_i / ‖u_i‖ is the cosine of u_i and w up to a factor common to all
segments. A Johnson–Lindenstrauss projection P keeps inner products in expectation, so an
inner-product search over normalised P u_i with the query P w finds the segments the exact score
ranks highest, without ever scoring them.

P is never materialised over all parameters: each weight matrix W [a, b] (higher-rank tensors are
viewed as [shape[0], rest]) gets its own Kronecker-factored Gaussian projection
vec(L U Rᵀ)/r with L [r, a], R [r, b] (r² = sketch size), and every other tensor a CountSketch
(one random bucket and sign per element). Both are unbiased for inner products; summing the
per-tensor sketches gives an unbiased sketch of the concatenation. Memory is r·(a+b) per matrix
plus one bucket per vector element, and every projection is generated from the index seed and the
parameter's name, so any process rebuilds the same P.
"""
from __future__ import annotations

import hashlib
import math
from typing import Mapping, Sequence

import torch

#: sketch size r² (r = 64): on the demo, 256 and 1024 dimensions lost a fifth of the exhaustive top-10
#: that the unprojected first-order score keeps; 4096 came within 0.05 of it (docs/performance.md)
SKETCH_DIM = 4096


def _generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.sha256(f"sketch/{seed}/{name}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


class GradientSketch:
    """P (F+λI)^-1/2 g for the parameters ``names`` (P fixed by ``seed``), and the query's P (F+λI)^1/2 Δ."""

    def __init__(self, names: Sequence[str], shapes: Sequence[torch.Size], fisher: Mapping[str, torch.Tensor],
                 damping: float, *, seed: int, dim: int = SKETCH_DIM, device: torch.device | str = "cpu") -> None:
        r = math.isqrt(dim)
        if r * r != dim:
            raise ValueError(f"sketch size {dim} is not a square")
        self.names = list(names)
        self.dim, self.r = dim, r
        self.device = torch.device(device)
        self.lam = damping
        #: sqrt(F + λ) per parameter
        self._root = {n: (fisher[n].float() + damping).sqrt().to(self.device) for n in self.names}
        self._proj: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, shape in zip(self.names, shapes):
            gen = _generator(seed, name)
            if len(shape) >= 2:
                a, b = shape[0], math.prod(shape[1:])
                left, right = torch.randn(r, a, generator=gen), torch.randn(r, b, generator=gen)
                self._proj[name] = (left.to(self.device), right.to(self.device) / r)
            else:
                n = max(1, math.prod(shape))
                bucket = torch.randint(0, dim, (n,), generator=gen)
                sign = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
                self._proj[name] = (bucket.to(self.device), sign.to(self.device))

    def project(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Σ_l P_l x_l over the given parameters (any subset of ``names``): [dim] float32 on CPU."""
        if not tensors:
            return torch.zeros(self.dim)
        return self.project_rows({n: x[None] for n, x in tensors.items()})[0].cpu()

    def project_rows(self, tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Row by row: each tensor [b, *shape] -> [b, dim] float32, on the sketch's device."""
        out: torch.Tensor | None = None
        for name, x in tensors.items():
            a, b = self._proj[name]
            x = x.to(self.device, torch.float32)
            rows = x.shape[0]
            if out is None:
                out = torch.zeros(rows, self.dim, dtype=torch.float32, device=self.device)
            if x.dim() >= 3:
                out += (a @ x.reshape(rows, x.shape[1], -1) @ b.T).flatten(1)
            else:
                out.index_add_(1, a, x.reshape(rows, -1) * b)
        if out is None:
            raise ValueError("no tensors to project")
        return out

    def of_gradient(self, grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sketch of a training segment: P (F+λI)^-1/2 g."""
        return self.project({n: g.float() / self._root[n].to(g.device) for n, g in grads.items()})

    def of_gradients(self, grads: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sketches of several segments, gradients [b, *shape] -> [b, dim] float32 on CPU."""
        return self.project_rows({n: g.float() / self._root[n].to(g.device) for n, g in grads.items()}).cpu()

    def of_step(self, delta: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Sketch of the query's parameter change: P (F+λI)^1/2 Δ, so that u_iᵀ w = g_iᵀ Δ ≈ τ_i."""
        return self.project({n: d.float().to(self.device) * self._root[n] for n, d in delta.items()})


def for_model(module: torch.nn.Module, names: Sequence[str], fisher: Mapping[str, torch.Tensor], damping: float,
              *, seed: int, dim: int = SKETCH_DIM) -> GradientSketch:
    """The sketch of ``names`` of ``module``, on the module's device."""
    params = dict(module.named_parameters())
    device = params[names[0]].device
    return GradientSketch(names, [params[n].shape for n in names], fisher, damping, seed=seed, dim=dim, device=device)
