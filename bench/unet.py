"""The paper's backbone: guided-diffusion's class-conditional U-Net.

Written for this suite, with the module names and registration order of
``torchcfm.models.unet.UNetModelWrapper`` so that the paper's Conv2d indices
(0..64 on the CIFAR10 config) and state_dict keys line up with torchcfm.
Time enters as t in [0, 1] (no x1000 scaling); the class label enters through
``label_emb`` (nn.Embedding(num_classes, 4 * num_channels)) added to the time
embedding.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of the U-Net (torchcfm's UNetModelWrapper arguments)."""

    image_size: int = 32
    in_channels: int = 3
    num_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: str = "16"
    num_heads: int = 4
    num_head_channels: int = 64
    dropout: float = 0.1
    num_classes: int | None = 10
    # Conv2d index range adapted by default ("40-54" on the paper's configs).
    adapter_layers: str = "40-54"

    def to_dict(self) -> dict:
        return asdict(self)


# The paper's configurations and small ones for CPUs. Every config keeps the
# (mult 1,2,2,2 / 2 res blocks) layout, so Conv2d indices mean the same layers.
MODEL_CONFIGS: dict[str, UNetConfig] = {
    "cifar10": UNetConfig(),
    "cifar100": UNetConfig(num_classes=100),
    "imagenet64": UNetConfig(image_size=64, channel_mult=(1, 2, 3, 4),
                             attention_resolutions="32,16,8", num_classes=100,
                             adapter_layers="40-56"),
    "small": UNetConfig(num_channels=32, attention_resolutions="16", num_heads=1,
                        num_head_channels=-1, dropout=0.0),
    "tiny": UNetConfig(num_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                       attention_resolutions="", num_heads=1, num_head_channels=-1,
                       dropout=0.0, adapter_layers="8-12"),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (fractional) times t, shape (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (as guided-diffusion does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int) -> nn.Module:
    return GroupNorm32(32, channels)


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.detach().zero_()
    return module


class TimestepEmbedSequential(nn.Sequential):
    """A Sequential that passes the embedding to the children that take one."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class Upsample(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Downsample(nn.Module):
    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(nn.Module):
    """Residual block with the time embedding added between its two convs."""

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(normalization(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(normalization(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                        zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class QKVAttentionLegacy(nn.Module):
    """Multi-head attention over a packed qkv tensor, guided-diffusion's legacy order."""

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = qkv.reshape(bs, self.n_heads, ch * 3, length).split(ch, dim=2)
        # (batch, heads, length, ch): the 4-D layout SDPA's fused kernels take (3-D falls back to
        # the unfused math path, on the CPU and on CUDA alike)
        a = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3))
        return a.transpose(2, 3).reshape(bs, -1, length)


class AttentionBlock(nn.Module):
    """Self-attention over spatial positions; qkv and proj_out are Conv1d (not counted as Conv2d)."""

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1):
        super().__init__()
        self.channels = channels
        self.num_heads = num_heads if num_head_channels == -1 else channels // num_head_channels
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.attention = QKVAttentionLegacy(self.num_heads)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)


class UNetModel(nn.Module):
    """Class-conditional U-Net v_theta(t, x, y), torchcfm's layout."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        ch = mc = config.num_channels
        if ch % 32:
            raise ValueError(f"num_channels must be a multiple of 32 (GroupNorm(32)), got {ch}")
        attention_ds = {config.image_size // int(r) for r in config.attention_resolutions.split(",") if r.strip()}
        heads = dict(num_heads=config.num_heads, num_head_channels=config.num_head_channels)
        emb_dim = mc * 4
        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.num_classes = config.num_classes
        if config.num_classes is not None:
            self.label_emb = nn.Embedding(config.num_classes, emb_dim)
        ch = int(config.channel_mult[0] * mc)
        input_ch = ch
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(config.in_channels, ch, 3, padding=1))])
        chans, ds = [ch], 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, config.dropout, int(mult * mc))]
                ch = int(mult * mc)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, **heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                chans.append(ch)
            if level != len(config.channel_mult) - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                chans.append(ch)
                ds *= 2
        self.middle_block = TimestepEmbedSequential(ResBlock(ch, emb_dim, config.dropout),
                                                    AttentionBlock(ch, **heads),
                                                    ResBlock(ch, emb_dim, config.dropout))
        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(config.channel_mult))[::-1]:
            for i in range(config.num_res_blocks + 1):
                layers = [ResBlock(ch + chans.pop(), emb_dim, config.dropout, int(mc * mult))]
                ch = int(mc * mult)
                if ds in attention_ds:
                    layers.append(AttentionBlock(ch, **heads))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        self.out = nn.Sequential(normalization(ch), nn.SiLU(),
                                 zero_module(nn.Conv2d(input_ch, config.in_channels, 3, padding=1)))

    def class_embedding(self, y: torch.Tensor) -> torch.Tensor:
        """Embedding rows of labels y; adapters may replace ``label_emb`` to add classes."""
        return self.label_emb(y)

    def forward(self, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        while t.dim() > 1:
            t = t[:, 0]
        if t.dim() == 0:
            t = t.repeat(x.shape[0])
        emb = self.time_embed(timestep_embedding(t, self.config.num_channels))
        if self.num_classes is not None:
            if y is None:
                raise ValueError("a class-conditional U-Net needs labels y")
            emb = emb + self.class_embedding(y)
        hs, h = [], x
        for module in self.input_blocks:
            h = module(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        for module in self.output_blocks:
            h = module(torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)


def build_unet(name_or_config: str | UNetConfig, **overrides) -> UNetModel:
    """Build a U-Net from a named config (``cifar10``, ``imagenet64``, ``small``...) and overrides."""
    if isinstance(name_or_config, str):
        if name_or_config not in MODEL_CONFIGS:
            raise KeyError(f"unknown model config {name_or_config!r}; known: {', '.join(MODEL_CONFIGS)}")
        config = MODEL_CONFIGS[name_or_config]
    else:
        config = name_or_config
    if overrides:
        config = UNetConfig(**{**config.to_dict(), **overrides})
    return UNetModel(config)

