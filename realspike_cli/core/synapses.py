"""Inference-form synaptic layers that take binary spike tensors (paper Sec. 3.3, Eq. 9–13).

Each folds the Real Spike coefficients of its sources into its weights; `reparam.to_inference` builds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Pair = tuple[int, int]


class SynapticScale(nn.Module):
    """A per-synapse weight a on an identity connection into a neuron: each spike adds the constant a."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = nn.Parameter(a.detach().clone())

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return spikes * self.a

    def extra_repr(self) -> str:
        return f"shape={tuple(self.a.shape)}"


class OpSpec:
    """The shared operation of a conv or linear layer, without its weights (plain data, never saved)."""

    def __init__(self, layer: nn.Module) -> None:
        self.conv = isinstance(layer, nn.Conv2d)
        if self.conv:
            self.stride, self.padding = layer.stride, layer.padding
            self.dilation, self.groups = layer.dilation, layer.groups

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
        if self.conv:
            return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)
        return F.linear(x, weight, bias)

    def __repr__(self) -> str:
        if not self.conv:
            return "linear"
        s = self
        return f"conv2d(stride={s.stride}, padding={s.padding}, dilation={s.dilation}, groups={s.groups})"


def _paths(paths: list[list[nn.Module]]) -> nn.ModuleList:
    return nn.ModuleList(nn.Sequential(*p) for p in paths)


class SharedSynapse(nn.Module):
    """Several spike sources into one layer, one rescaled shared kernel each: Σ_i op(path_i(o_i), W_i) + b.

    Used for layer/channel coefficients with more than one source (SEW-ResNet ADD: the coefficients of
    different sources differ, so one kernel cannot carry them all).
    """

    def __init__(
        self,
        layer: nn.Module,
        weights: list[torch.Tensor],
        bias: torch.Tensor | None,
        paths: list[list[nn.Module]],
    ) -> None:
        super().__init__()
        self.op = OpSpec(layer)
        self.weights = nn.ParameterList(nn.Parameter(w.detach().clone()) for w in weights)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.paths = _paths(paths)

    def forward(self, *spikes: torch.Tensor) -> torch.Tensor:
        out = self.op(self.paths[0](spikes[0]), self.weights[0], self.bias)
        for o, path, w in zip(spikes[1:], self.paths[1:], self.weights[1:], strict=True):
            out = out + self.op(path(o), w)
        return out

    def extra_repr(self) -> str:
        return f"{self.op}, sources={len(self.weights)}"


class FactorizedSynapse(nn.Module):
    """Unshared synapses stored compactly: op(Σ_i path_i(a_i ⊙ o_i), K) + b.

    With path = identity this is exactly the unshared kernel K̃[k,l,i,j,m,n] = a[k+i−1, l+j−1, m]·K[i,j,m,n]
    (zero padding included) applied to the binary spikes o; only K and a are stored.
    """

    def __init__(
        self,
        layer: nn.Module,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        coeffs: list[torch.Tensor],
        paths: list[list[nn.Module]],
    ) -> None:
        super().__init__()
        self.op = OpSpec(layer)
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.coeffs = nn.ParameterList(nn.Parameter(a.detach().clone()) for a in coeffs)
        self.paths = _paths(paths)

    def forward(self, *spikes: torch.Tensor) -> torch.Tensor:
        x = self.paths[0](spikes[0] * self.coeffs[0])
        for o, path, a in zip(spikes[1:], self.paths[1:], self.coeffs[1:], strict=True):
            x = x + path(o * a)
        return self.op(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.op}, sources={len(self.coeffs)}"


class LocallyConnected2d(nn.Module):
    """A conv with one kernel per output position (no weight sharing): pad → unfold → einsum.

    weight: [L, C·kh·kw, N] for L = out_h·out_w positions (laid out so one batched matmul over positions
    needs no copy of the big weight); `pad` is (left, right, top, bottom) and may be
    negative (a crop) where a composed pooling layer never looked at the last rows/columns.
    """

    def __init__(
        self, weight: torch.Tensor, kernel: Pair, stride: Pair, pad: tuple[int, int, int, int], out: Pair
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.kernel, self.stride, self.pad, self.out = kernel, stride, pad, out

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        patches = F.unfold(F.pad(spikes, self.pad), self.kernel, stride=self.stride)  # [B, C·kh·kw, L]
        out = torch.bmm(patches.permute(2, 0, 1).contiguous(), self.weight)  # [L, B, N]; strided is slow
        return out.permute(1, 2, 0).reshape(out.shape[1], out.shape[2], *self.out)

    def extra_repr(self) -> str:
        positions, _, out = self.weight.shape
        return f"positions={positions}, out={out}, kernel={self.kernel}, stride={self.stride}"


class DenseSynapse(nn.Module):
    """A dense linear map over the flattened spikes (a linear layer composed with the pooling before it)."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())

    def forward(self, spikes: torch.Tensor) -> torch.Tensor:
        return F.linear(spikes.flatten(1), self.weight)


class MaterializedSynapse(nn.Module):
    """Explicit unshared synapses, one branch per spike source: Σ_i branch_i(o_i) + b."""

    def __init__(self, branches: list[nn.Module], bias: torch.Tensor | None) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, *spikes: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](spikes[0])
        for o, branch in zip(spikes[1:], self.branches[1:], strict=True):
            out = out + branch(o)
        if self.bias is None:
            return out
        return out + self.bias.view(-1, *([1] * (out.dim() - 2)))


def _pool_weights(pool: nn.AvgPool2d, in_hw: Pair, like: torch.Tensor) -> tuple[torch.Tensor, Pair]:
    """1/(window element count) at every input position (0 where no window looks), and the pooled size.

    Average pooling is linear, so its adjoint applied to ones gives exactly these factors, including the
    shortened windows of ceil_mode; kernel == stride (checked by the caller) makes windows disjoint.
    """
    x = torch.zeros(1, 1, *in_hw, dtype=like.dtype, device=like.device, requires_grad=True)
    y = pool(x)
    (w,) = torch.autograd.grad(y, x, torch.ones_like(y))
    return w[0, 0], (y.shape[-2], y.shape[-1])


def materialize_conv(
    conv: nn.Conv2d, weight: torch.Tensor, coeff: torch.Tensor, pool: nn.AvgPool2d | None
) -> LocallyConnected2d:
    """The locally connected layer equal to conv(pool(a ⊙ o)) on binary spikes o of shape [C, H, W] = a's.

    A pool of kernel = stride = p composes with the conv into one kernel upsampled by p (K_up[y, x] =
    K[y//p, x//p]) with stride s·p and padding q·p on the pre-pool map, and a_eff = a / window count.
    """
    _, h, w = coeff.shape
    (kh, kw), (sh, sw), (qh, qw) = conv.kernel_size, conv.stride, conv.padding
    with torch.enable_grad():
        if pool is None:
            ph = pw = 1
            a_eff, (hp, wp) = coeff, (h, w)
        else:
            ph, pw = _pair(pool.kernel_size)
            scale, (hp, wp) = _pool_weights(pool, (h, w), coeff)
            a_eff = coeff * scale
    out = ((hp + 2 * qh - kh) // sh + 1, (wp + 2 * qw - kw) // sw + 1)
    kernel, stride = (kh * ph, kw * pw), (sh * ph, sw * pw)
    top, left = qh * ph, qw * pw
    bottom = (out[0] - 1) * stride[0] + kernel[0] - top - h  # negative: crop rows no output ever reads
    right = (out[1] - 1) * stride[1] + kernel[1] - left - w
    pad = (left, right, top, bottom)
    k_up = weight.repeat_interleave(ph, 2).repeat_interleave(pw, 3).reshape(weight.shape[0], -1)
    a_cols = F.unfold(F.pad(a_eff.detach()[None], pad), kernel, stride=stride)[0]  # [C·kh·kw, L]
    local = a_cols.T[:, :, None] * k_up.T[None]  # [L, C·kh·kw, N]
    return LocallyConnected2d(local, kernel, stride, pad, out)


def materialize_linear(weight: torch.Tensor, coeff: torch.Tensor, path: nn.Module) -> DenseSynapse:
    """The dense layer equal to linear(path(a ⊙ o)) for a linear `path` (pools, flatten): row r is
    path^T(W_r) ⊙ a, obtained exactly by one vector-Jacobian product of the path."""
    with torch.enable_grad():
        x = weight.new_zeros(weight.shape[0], *coeff.shape).requires_grad_()
        y = path(x)
        (rows,) = torch.autograd.grad(y, x, weight.detach())
    return DenseSynapse((rows * coeff).reshape(weight.shape[0], -1))


def _pair(v: int | tuple[int, ...]) -> Pair:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# --- weight arithmetic: done in float64, cast back to the layer's dtype (one rounding per stored weight) ---


def set_weight(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """Replace a conv/linear layer's values keeping its dtype; a missing bias is created."""
    dtype = layer.weight.dtype
    layer.weight = nn.Parameter(weight.to(dtype))
    if bias is not None:
        layer.bias = nn.Parameter(bias.to(dtype))


def fold_batchnorm(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    """W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε), per output channel (eval-mode BatchNorm)."""
    w = layer.weight.detach().double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = torch.ones_like(mean) if bn.weight is None else bn.weight.detach().double()
    beta = torch.zeros_like(mean) if bn.bias is None else bn.bias.detach().double()
    bias = torch.zeros_like(mean) if layer.bias is None else layer.bias.detach().double()
    s = gamma / torch.sqrt(var + bn.eps)
    set_weight(layer, w * s.view(-1, *([1] * (w.dim() - 1))), (bias - mean) * s + beta)


def scale_inputs(layer: nn.Module, scale: torch.Tensor) -> torch.Tensor:
    """The layer's weight (float64) with input channel / column m multiplied by scale[m] (per group)."""
    w = layer.weight.detach().double()
    scale = scale.to(device=w.device, dtype=w.dtype)
    if isinstance(layer, nn.Linear):
        return w * scale
    g = layer.groups
    grouped = w.view(g, w.shape[0] // g, w.shape[1], *w.shape[2:])
    return (grouped * scale.view(g, 1, w.shape[1], *([1] * (w.dim() - 2)))).view_as(w)


def disjoint_avgpool(pool: nn.AvgPool2d) -> bool:
    """kernel == stride, no padding, no divisor override: windows tile the map without overlap."""
    kernel = _pair(pool.kernel_size)
    stride = kernel if pool.stride is None else _pair(pool.stride)
    return stride == kernel and _pair(pool.padding) == (0, 0) and pool.divisor_override is None
