"""Inspect a backbone (and a method on it): parameters and the paper's Conv2d indices.

    python -m bench.inspect model=cifar10 format=json
    python -m bench.inspect model=cifar10 method=funlora method.K=5 format=json

JSON: {"params", "conv2d": [{"index", "name", "in_channels", "out_channels", "kernel_size"}]}
plus, with a method, "method", "ppc", "embedding_per_class", "trainable" and "layers"
(the adapted layers). Without ``format=json`` a readable table.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, fields
from typing import Any, Optional

import methods
from methods.targets import conv2d_layers

from .config import parse_known, typed_merge
from .errors import BenchError, cli
from .unet import MODEL_CONFIGS, build_unet

@dataclass
class InspectOptions:
    model: str = "cifar10"
    format: str = "table"
    method: Any = None
    num_classes: Optional[int] = None
    image_size: Optional[int] = None
    in_channels: Optional[int] = None


KEYS = {f.name for f in fields(InspectOptions)}


def describe(model: str = "cifar10", method: dict | None = None, **overrides) -> dict:
    if model not in MODEL_CONFIGS:
        raise BenchError(f"unknown model {model!r}; models: {', '.join(MODEL_CONFIGS)}")
    unet = build_unet(model, **overrides)
    info = {"model": model, "params": sum(p.numel() for p in unet.parameters()),
            "conv2d": [{"index": i, "name": n, "in_channels": c.in_channels, "out_channels": c.out_channels,
                        "kernel_size": c.kernel_size[0]} for i, (n, c) in enumerate(conv2d_layers(unet))]}
    if method:
        options = {k: v for k, v in method.items() if k != "name"}
        adapter = methods.build(method["name"], **options).attach(unet)
        first = adapter.embedding_params_per_class()
        adapter.add_classes([unet.config.num_classes - 1])
        info.update({"method": method["name"], "options": adapter.options, "ppc": adapter.ppc(),
                     "embedding_per_class": first, "shared_params": adapter.shared_params(),
                     "budget": adapter.budget_choice.to_dict() if adapter.budget_choice else None,
                     "trainable": sum(p.numel() for p in adapter.trainable_parameters()),
                     "layers": [{"key": k, **v} for k, v in adapter.layer_info.items()]})
    return info


def table(info: dict) -> str:
    lines = [f"model {info['model']}: {info['params']:,} parameters, {len(info['conv2d'])} Conv2d"]
    adapted = {v["name"] for v in info.get("layers", [])}
    lines.append(f"{'idx':>4}  {'name':<40} {'in':>5} {'out':>5} {'k':>2}")
    for c in info["conv2d"]:
        mark = " *" if c["name"] in adapted else ""
        lines.append(f"{c['index']:>4}  {c['name']:<40} {c['in_channels']:>5} {c['out_channels']:>5} "
                     f"{c['kernel_size']:>2}{mark}")
    if "method" in info:
        lines.append(f"method {info['method']}: PPC {info['ppc']:,} (+ {info['embedding_per_class']} embedding "
                     f"parameters per class), trainable for one new class {info['trainable']:,}; * = adapted")
        if info.get("shared_params"):
            lines.append(f"  + {info['shared_params']:,} frozen parameters shared by all classes")
        if info.get("budget"):
            b = info["budget"]
            lines.append(f"  budget {b['requested']} (PPC <= {b['limit']:,}): {b['option'] or 'fixed size'}"
                         f"{'=' + str(b['size']) if b['option'] else ''}{'' if b['met'] else ', OVER budget'}")
    return "\n".join(lines)


@cli
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return 0
    args = {k: v for k, v in typed_merge(InspectOptions, parse_known(argv, KEYS)).items()
            if v is not None or k == "method"}
    fmt = args.pop("format")
    if fmt not in ("json", "table"):
        raise BenchError(f"format must be json or table, got {fmt!r}")
    for key, least in (("num_classes", 1), ("image_size", 4), ("in_channels", 1)):
        if key in args and (isinstance(args[key], bool) or args[key] < least):
            raise BenchError(f"{key} must be an integer >= {least}, got {args[key]!r}")
    method = args.get("method")
    if method is None:
        args.pop("method")
    elif not isinstance(method, dict):
        args["method"] = {"name": method}
    elif isinstance(method, dict) and "name" not in method:
        raise BenchError(f"method.{next(iter(method))} needs a method: add method=NAME (e.g. method=funlora)")
    info = describe(**args)
    print(json.dumps(info, indent=1) if fmt == "json" else table(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
