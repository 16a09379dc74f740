"""The one adapter interface: per-class parameters on a frozen backbone.

An ``Adapter`` wraps the backbone's target layers, allocates parameters for new classes
(``add_classes``), exposes only the current task's parameters as trainable, and runs
mixed-label batches: every sample uses its own class's adapted layers. Classes without
an adapter (those of the first task) use the frozen backbone as it is.

Override points (everything else is shared; see ``docs/adding-a-method.md``):

============================  ==========================================================
``Options``                   a dataclass of the method's options (subclass
                              ``AdapterOptions``, methods/options.py); ``validate`` checks values
``target`` / ``select_targets``  which layers are wrapped: ``"conv2d"`` (the paper's
                              Conv2d indices, option ``layers``), ``"attention"``, ``"none"``
``new_layer_params``          one class's initial parameters for one layer (identity)
``adapted_weight``            weight form: W'_y of one class and layer; samples are
                              grouped by label, one convolution per class present
``feature_forward``           feature form (set ``form = "feature"``): the layer's output
                              for a whole mixed batch, from per-sample vectors gathered by
                              label (``per_sample_table``), in one batched call
============================  ==========================================================

The shortcut "every sample of the batch belongs to a frozen-backbone class -> run the
base layer" lives in ``layer_forward`` only; overrides never see such a batch.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .options import AdapterOptions, build_options, positive_int  # noqa: F401  (plugins import them from here)
from .targets import MethodError, select_conv2d, set_submodule


@dataclass
class BatchPlan:
    """How one batch's labels map onto adapted classes, computed once per forward."""

    labels: torch.Tensor
    classes: list[int | None]          # slot -> class (None: the frozen backbone)
    slot: torch.Tensor                 # per sample: its slot in ``classes``
    groups: list[tuple[int | None, torch.Tensor]]  # (class, sample indices), one per slot present

    @classmethod
    def build(cls, labels: torch.Tensor, adapted: set[int]) -> "BatchPlan":
        present = sorted(int(c) for c in torch.unique(labels).tolist())
        classes: list[int | None] = [None] + [c for c in present if c in adapted]
        lut = torch.zeros(max(present) + 1, dtype=torch.long)
        for s, c in enumerate(classes[1:], start=1):
            lut[c] = s
        slot = lut.to(labels.device)[labels]
        groups = []
        for s, c in enumerate(classes):
            idx = (slot == s).nonzero(as_tuple=True)[0]
            if idx.numel():
                groups.append((c, idx))
        return cls(labels, classes, slot, groups)

    @property
    def single(self) -> tuple[bool, int | None]:
        """(True, class) when the whole batch uses one slot."""
        return (len(self.groups) == 1, self.groups[0][0] if len(self.groups) == 1 else None)


class AdaptedLayer(nn.Module):
    """Stands where a backbone layer was; routes its forward through the adapter."""

    is_adapted_layer = True

    def __init__(self, base: nn.Module, adapter: "Adapter", key: str):
        super().__init__()
        self.base = base
        self.key = key
        object.__setattr__(self, "_adapter", adapter)  # not a submodule: no cycle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._adapter.layer_forward(self.key, self.base, x)


class ClassEmbedding(nn.Module):
    """The backbone's label embedding with the rows of adapted classes replaced."""

    is_adapted_layer = True

    def __init__(self, base: nn.Embedding, adapter: "Adapter"):
        super().__init__()
        self.base = base
        object.__setattr__(self, "_adapter", adapter)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        rows = {c: p.embedding for c, p in self._adapter.class_params_items() if p.embedding is not None}
        if not rows:
            return self.base(y)
        index = torch.tensor(list(rows), dtype=torch.long, device=y.device)
        table = self.base.weight.index_put((index,), torch.stack(list(rows.values())))
        return F.embedding(y, table)


def hide_routing_from_compiler() -> None:
    """``compile=true``: adapted layers run eager, outside torch.compile's graphs. Their routing
    depends on Python values (the batch's class set, group sizes, cached weights' data_ptr), so a
    traced routing recompiled the U-Net for every class set and, after dynamo's limit of 8, ran
    the whole U-Net eager; hidden, the frozen layers between them compile once per shape."""
    for cls in (AdaptedLayer, ClassEmbedding):
        if not getattr(cls.forward, "_hidden_from_compiler", False):
            forward = torch.compiler.disable(cls.forward)
            forward._hidden_from_compiler = True
            cls.forward = forward


class ClassParams(nn.Module):
    """One class's parameters: its embedding row and one ParameterDict per adapted layer."""

    def __init__(self, embedding: torch.Tensor | None, layers: dict[str, dict[str, torch.Tensor]]):
        super().__init__()
        self.embedding = nn.Parameter(embedding.clone()) if embedding is not None else None
        self.layers = nn.ModuleDict({k: nn.ParameterDict({n: nn.Parameter(t) for n, t in v.items()})
                                     for k, v in layers.items()})

    def adapter_numel(self) -> int:
        return sum(p.numel() for p in self.layers.parameters())


class Adapter(nn.Module):
    """Base class of every method in ``methods/``; the module docstring lists its override points."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""            # the report's row name (the paper's, where it has one)
    Options: ClassVar[type[AdapterOptions]] = AdapterOptions
    target: ClassVar[str] = "conv2d"     # "conv2d", "attention" or "none"
    form: ClassVar[str] = "weight"       # "weight" (adapted_weight) or "feature" (feature_forward)
    size_option: ClassVar[Optional[str]] = None   # the option a ``budget`` sets (rank, block_size...)
    size_monotone: ClassVar[bool] = True          # PPC grows along ``size_candidates()``

    def __init__(self, **options: Any):
        super().__init__()
        self.config = build_options(self.Options, self.name or type(self).__name__, options)
        option = self.size_option
        if options.get("budget") is not None and option is not None and option in options:
            raise MethodError(f"method {self.name or type(self).__name__!r}: method.budget chooses "
                              f"method.{option} itself; give method.{option}={options[option]!r} or "
                              f"method.budget={options['budget']!r}, not both")
        self.options: dict[str, Any] = asdict(self.config)
        self.backbone: nn.Module | None = None
        self.layer_info: dict[str, dict[str, Any]] = {}
        self.class_params = nn.ModuleDict()
        self._plan: BatchPlan | None = None
        self.budget_choice = None   # a methods.budget.BudgetChoice once a budget is resolved
        self._weights: dict = {}    # (layer key, class) -> (stamp, W'_y), sampling only (class_weight)
        self.implementation: dict[str, str] = {}   # how it computes, once attached (the cell logs it)

    # ---- options and attachment -------------------------------------------------
    def attach(self, backbone: nn.Module) -> "Adapter":
        """Freeze ``backbone`` and wrap its target layers; returns self (call it once)."""
        if self.backbone is not None:
            raise MethodError(f"method {self.name!r} is already attached to a backbone")
        from .budget import resolve

        targets = list(self.select_targets(backbone))
        self.budget_choice = resolve(self, backbone, targets)   # sets the size option, if budgeted
        for p in backbone.parameters():
            p.requires_grad_(False)
        self.backbone = backbone
        for key, name, module, info in targets:
            set_submodule(backbone, name, AdaptedLayer(module, self, key))
            self.layer_info[key] = {"name": name, **info}
        if hasattr(backbone, "label_emb"):
            backbone.label_emb = ClassEmbedding(backbone.label_emb, self)
        self.attach_shared()
        return self

    def attach_shared(self) -> None:
        """Build parameters shared by all classes and frozen (VeRA's random matrices); none by default."""

    def shared_params(self) -> int:
        """Frozen parameters shared by every class (reported apart from PPC, like embedding rows)."""
        return 0

    def size_candidates(self) -> list[Any]:
        """The values of ``size_option`` a budget chooses among (ranks 1..512 by default)."""
        return list(range(1, 513))

    def select_targets(self, backbone: nn.Module):
        """Yield (key, module name, module, info) for every layer this method adapts."""
        if self.target != "conv2d":
            return
        layers = self.options["layers"]
        if layers == "auto":
            layers = getattr(getattr(backbone, "config", None), "adapter_layers", "all")
        for index, name, conv in select_conv2d(backbone, layers, self.options["target_modules"]):
            info = {"index": index, "in_channels": conv.in_channels, "out_channels": conv.out_channels,
                    "kernel_size": conv.kernel_size[0]}
            yield f"conv{index}", name, conv, info

    # ---- classes ------------------------------------------------------------------
    def new_layer_params(self, key: str, module: nn.Module) -> dict[str, torch.Tensor]:
        """Initial parameters of one class for one layer (identity at initialisation)."""
        return {}

    def add_classes(self, classes: list[int]) -> None:
        """Allocate parameters for ``classes`` (initialised to the identity) and make them trainable."""
        assert self.backbone is not None, "attach() the method to a backbone first"
        emb = self._embedding_base()
        for y in classes:
            if str(y) in self.class_params:
                raise MethodError(f"class {y} already has an adapter")
            if emb is not None and not 0 <= y < emb.num_embeddings:
                raise MethodError(f"class {y} is outside the backbone's {emb.num_embeddings} classes")
            layers = {k: self.new_layer_params(k, self._layer(k).base) for k in self.layer_info}
            row = emb.weight.detach()[y] if (emb is not None and self.options["train_embedding"]) else None
            self.class_params[str(y)] = ClassParams(row, layers).to(self._device())
        self.set_trainable(classes)

    def set_trainable(self, classes: list[int]) -> None:
        """Only the parameters of ``classes`` require grad; everything else is frozen."""
        wanted = {str(c) for c in classes}
        for key, params in self.class_params.items():
            for p in params.parameters():
                p.requires_grad_(key in wanted)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.class_params.parameters() if p.requires_grad]

    def adapted_classes(self) -> set[int]:
        return {int(k) for k in self.class_params}

    def class_params_items(self):
        return ((int(k), v) for k, v in self.class_params.items())

    def ppc(self) -> int:
        """Parameters per class really allocated for one class (embedding row excluded)."""
        probe = self._probe_class()
        return probe.adapter_numel()

    def embedding_params_per_class(self) -> int:
        emb = self._embedding_base()
        return emb.embedding_dim if (emb is not None and self.options["train_embedding"]) else 0

    # ---- forward ------------------------------------------------------------------
    @contextmanager
    def batch(self, labels: torch.Tensor):
        """Route a forward pass for ``labels``: every sample uses its own class's layers."""
        self._plan = BatchPlan.build(labels, self.adapted_classes())
        keep = set(self._plan.classes) if not torch.is_grad_enabled() else set()
        self._weights = {k: v for k, v in self._weights.items() if k[1] in keep}
        try:
            yield self._plan
        finally:
            self._plan = None

    def forward(self, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self.batch(y):
            return self.backbone(t, x, y)

    def layer_forward(self, key: str, base: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Every wrapped layer's forward: the frozen-batch shortcut, then the method's form."""
        plan = self._plan
        if plan is None:
            raise RuntimeError("adapted layers run only inside Adapter.forward / Adapter.batch(labels)")
        single, cls = plan.single
        if single and cls is None:
            return base(x)
        if self.uses_feature_form():
            return self.feature_forward(key, base, x, plan)
        return self.grouped_forward(key, base, x, plan)

    def uses_feature_form(self) -> bool:
        """Whether ``feature_forward`` runs this method's layers (``form`` by default)."""
        return self.form == "feature"

    def feature_forward(self, key: str, base: nn.Module, x: torch.Tensor, plan: BatchPlan) -> torch.Tensor:
        """Feature form: the output of layer ``key`` for a batch holding at least one adapted class."""
        raise NotImplementedError(f"method {self.name!r} declares form='feature' but has no feature_forward")

    def grouped_forward(self, key: str, base: nn.Module, x: torch.Tensor, plan: BatchPlan) -> torch.Tensor:
        """Weight form: one call of the layer per class present in the batch."""
        if len(plan.groups) == 1:
            return self._call_with_weight(key, base, x, plan.groups[0][0])
        if self.options["grouped_conv"] and isinstance(base, nn.Conv2d) and base.groups == 1:
            return self._grouped_conv(key, base, x, plan)
        outs, order = [], []
        for cls, idx in plan.groups:
            outs.append(self._call_with_weight(key, base, x.index_select(0, idx), cls))
            order.append(idx)
        inverse = torch.empty_like(plan.slot)
        perm = torch.cat(order)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        return torch.cat(outs).index_select(0, inverse)

    def _grouped_conv(self, key: str, base: nn.Conv2d, x: torch.Tensor, plan: BatchPlan) -> torch.Tensor:
        """All classes of a mixed batch in one grouped convolution.

        Group u's samples go to channel block u of a (m, U * c_in, H, W) input (groups
        shorter than the longest, m, are padded with zeros), and the U weights W'_u are
        stacked into one (U * c_out, c_in, k, k) weight with ``groups=U``.
        """
        U = len(plan.groups)
        m = max(idx.numel() for _, idx in plan.groups)
        weights, blocks = [], []
        for cls, idx in plan.groups:
            w = base.weight if cls is None else self.class_weight(key, base, cls)
            weights.append(w)
            xb = x.index_select(0, idx)
            if idx.numel() < m:
                xb = torch.cat([xb, xb.new_zeros(m - idx.numel(), *xb.shape[1:])])
            blocks.append(xb)
        xs = torch.stack(blocks, dim=1).reshape(m, U * x.shape[1], *x.shape[2:])
        bias = base.bias.repeat(U) if base.bias is not None else None
        out = F.conv2d(xs, torch.cat(weights), bias, base.stride, base.padding, base.dilation, U)
        out = out.view(m, U, base.out_channels, *out.shape[2:]).transpose(0, 1)   # (U, m, c_out, H', W')
        result = out.new_empty(x.shape[0], *out.shape[2:])
        for u, (_, idx) in enumerate(plan.groups):
            result[idx] = out[u, :idx.numel()]
        return result

    def _call_with_weight(self, key: str, base: nn.Module, x: torch.Tensor, cls: int | None) -> torch.Tensor:
        if cls is None:
            return base(x)
        return conv_with_weight(base, x, self.class_weight(key, base, cls))

    def class_weight(self, key: str, base: nn.Module, cls: int) -> torch.Tensor:
        """W'_y of layer ``key``; without grad (sampling) reused while its inputs are unchanged.

        An ODE solver calls the model many times with the same classes: W'_y is computed
        once per class and layer and kept, stamped with the versions of the tensors it was
        made from (an optimizer step or a load bumps them, so it is then recomputed).
        Only the classes of the current batch are kept."""
        params = self.class_params[str(cls)].layers[key]
        if torch.is_grad_enabled():
            return self._adapted_weight_fp(key, base.weight, params)
        stamp = tuple((t._version, t.data_ptr()) for t in (base.weight, *params.values()))
        hit = self._weights.get((key, cls))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        weight = self._adapted_weight_fp(key, base.weight, params)
        self._weights[(key, cls)] = (stamp, weight)
        return weight

    def adapted_weight(self, key: str, weight: torch.Tensor, params: nn.ParameterDict) -> torch.Tensor:
        """W'_y for one class and layer; weight-form methods override this."""
        return weight

    def _adapted_weight_fp(self, key: str, weight: torch.Tensor, params: nn.ParameterDict) -> torch.Tensor:
        """``adapted_weight`` in the parameters' precision, autocast off (bench/precision.py): under
        bf16 every method builds W'_y in fp32 and only the layer's op with it runs in bf16."""
        with torch.autocast(weight.device.type, enabled=False):
            return self.adapted_weight(key, weight, params)

    # ---- save / load one class -----------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return {"method": self.name, "options": self.options}

    def save_class(self, y: int, directory: str | Path) -> Path:
        """Write class y's parameters (safetensors) and the method config (JSON) to ``directory``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        params = self.class_params[str(y)]
        tensors = {k: v.detach().cpu().contiguous() for k, v in params.state_dict().items()}
        meta = {**self.config_dict(), "class": y, "ppc": params.adapter_numel()}
        _atomic(directory / "adapter.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        _atomic(directory / "adapter_config.json", lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))
        return directory

    def load_class(self, directory: str | Path, y: int | None = None) -> int:
        """Load a class saved by ``save_class`` (into class ``y`` or its own); returns the class."""
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / "adapter_config.json").read_text())
        if meta["method"] != self.name:
            raise MethodError(f"{directory} holds a {meta['method']!r} adapter, not {self.name!r}")
        y = meta["class"] if y is None else y
        if str(y) not in self.class_params:
            self.add_classes([y])
        state = load_file(str(directory / "adapter.safetensors"), device=str(self._device()))
        self.class_params[str(y)].load_state_dict(state)
        self.set_trainable([])
        return y

    # ---- helpers ------------------------------------------------------------------------
    def _layer(self, key: str) -> AdaptedLayer:
        return self.backbone.get_submodule(self.layer_info[key]["name"])

    def _embedding_base(self) -> nn.Embedding | None:
        emb = getattr(self.backbone, "label_emb", None)
        return emb.base if isinstance(emb, ClassEmbedding) else emb

    def _device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def _probe_class(self) -> ClassParams:
        if len(self.class_params):
            return next(iter(self.class_params.values()))
        layers = {k: self.new_layer_params(k, self._layer(k).base) for k in self.layer_info}
        return ClassParams(None, layers)


def _atomic(path: Path, write) -> None:
    """``write(tmp)`` to a unique temporary name beside ``path``, fsync it, then rename it to ``path``."""
    import os

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def conv_with_weight(base: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: bool = True) -> torch.Tensor:
    """Run a Conv1d/Conv2d ``base`` with another weight of the same shape (and its bias unless told)."""
    conv = F.conv2d if isinstance(base, nn.Conv2d) else F.conv1d
    return conv(x, weight, base.bias if bias else None, base.stride, base.padding, base.dilation, base.groups)


def ones(*shape: int) -> torch.Tensor:
    return torch.ones(*shape)


def per_sample_table(adapter: Adapter, plan: BatchPlan, key: str, name: str,
                     identity: torch.Tensor) -> torch.Tensor:
    """Gather one per-class vector per sample (identity for frozen classes): (N, *shape)."""
    rows = [identity] + [adapter.class_params[str(c)].layers[key][name] for c in plan.classes[1:]]
    return torch.stack(rows).index_select(0, plan.slot)
