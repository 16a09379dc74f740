"""Sample grids: what a person looks at first in a generative model.

After each task a cell draws ``n`` images of every seen class, one row per class
labelled with the class name, from noise fixed per class (seeded by the cell's seed and
the class, never by the task). For per-class adapters the rows of old classes are then
the same pixels at every task (their adapters are bit-identical); under fine-tuning
they drift, which the HTML report shows side by side.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from .flow import sample
from .seeding import stage_seed

LABEL_WIDTH = 110
SCALE_TO = 48      # each image is upscaled (nearest) to at least this many pixels


def draw_samples(model, classes: list[int], n: int, shape: tuple, solver, seed: int,
                 device: torch.device) -> dict[int, torch.Tensor]:
    """``n`` samples per class in [-1, 1], CPU, each class from its own seeded noise."""
    out = {}
    for c in classes:
        g = torch.Generator().manual_seed(stage_seed(seed, "sample-grid", c))
        x, _ = sample(model, torch.full((n,), c, dtype=torch.long), shape, solver, generator=g, device=device)
        out[c] = x.clamp(-1, 1).cpu()
    return out


def grid_image(samples: dict[int, torch.Tensor], names: dict[int, str], title: str = "") -> Image.Image:
    """One row per class: its name, then its images (upscaled, nearest neighbour)."""
    first = next(iter(samples.values()))
    n, ch, h, w = first.shape
    zoom = max(1, -(-SCALE_TO // h))
    cell = (w * zoom + 2, h * zoom + 2)
    top = 18 if title else 0
    img = Image.new("RGB", (LABEL_WIDTH + n * cell[0], top + len(samples) * cell[1]), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    if title:
        draw.text((4, 3), title, fill="black", font=font)
    for row, (c, x) in enumerate(samples.items()):
        y0 = top + row * cell[1]
        draw.text((4, y0 + cell[1] // 2 - 6), names.get(c, str(c))[:16], fill="black", font=font)
        pixels = ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        for i in range(n):
            arr = pixels[i].permute(1, 2, 0).numpy()
            tile = Image.fromarray(arr[:, :, 0] if ch == 1 else arr, "L" if ch == 1 else "RGB")
            tile = tile.resize((w * zoom, h * zoom), Image.NEAREST).convert("RGB")
            img.paste(tile, (LABEL_WIDTH + i * cell[0] + 1, y0 + 1))
    return img


def readable_png(path: Path) -> bool:
    """Whether ``path`` is a whole PNG (decoded to its last pixel: a truncated file is not)."""
    try:
        with Image.open(path) as img:
            img.load()
            return img.format == "PNG"
    except (OSError, SyntaxError, ValueError):
        return False


def write_grid(img: Image.Image, path: Path) -> Path:
    """PNG through a temporary name (a killed run never leaves half a picture)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    img.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path


__all__ = ["draw_samples", "grid_image", "readable_png", "write_grid"]
