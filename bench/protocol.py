"""The continual protocol of METHOD.md section 1, for one cell.

For task t = 1..T: (1) generator: t = 1 trains the whole U-Net on D_1; t > 1 trains only
the new classes' parameters through a method on D_t (strategies retrain the whole
U-Net instead); (2) a synthetic set of every seen class; (3) a fresh ResNet18 (on real
D_1 at t = 1, on the synthetic set after); (4) accuracy on the real test images of each
seen task. Stage outputs are checkpointed, so a killed cell resumes where it stopped.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

import methods

from . import data as data_mod
from . import hardware, numerics, precision
from . import strategies
from .classifier import accuracy_per_class, accuracy_per_task, predict, train_classifier
from .errors import BenchError
from .files import load_tensors, quarantine, read_json
from .locks import record_provenance, stage_lock
from .flow import SolverConfig, sample
from .metrics import average_accuracies, summarize_nfe
from .record import NFE, CellInfo, Record, Seconds, write_json_atomic
from .seeding import seed_all, set_deterministic, stage_seed
from .stages import StagePaths
from .strategies.base import GeneratorInfo
from .trainer import Schedule, atomic_save, train_flow
from .unet import MODEL_CONFIGS, UNetModel, build_unet


# compile=true: torch.compile's backend for the U-Net (the tests count graphs with an eager one).
COMPILE_BACKEND = "inductor"


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA where present, else the CPU; ``cuda[:N]`` only where that GPU exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        import socket

        raise BenchError(f"device={name} was asked for but CUDA is not available on {socket.gethostname()}; "
                         "use device=auto or cpu")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BenchError(f"device={name}: this machine has {torch.cuda.device_count()} visible GPU(s) "
                         f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def model_for(cfg: dict, dataset: str) -> tuple[UNetModel, int]:
    """The U-Net of this scale for ``dataset`` (built on the current default device), and its image size."""
    size = cfg["image_size"]
    if size == "auto":
        size = 64 if data_mod.spec(dataset).native_size > 32 else 32
    arch = cfg["model"]
    if arch == "auto":
        arch = "imagenet64" if size == 64 else "cifar10"
    if arch not in MODEL_CONFIGS:
        raise BenchError(f"unknown model {arch!r}; models: {', '.join(MODEL_CONFIGS)}")
    spec = data_mod.spec(dataset)
    overrides = {"image_size": size, "in_channels": spec.channels, "num_classes": spec.num_classes}
    if arch == "small" and size <= 16:
        overrides["attention_resolutions"] = str(size // 2)
    return build_unet(arch, **overrides), size


def dry_build(cfg: dict) -> dict:
    """Build a cell's backbone and method on the meta device (no memory, no training): its sizes.

    Checks that need the model (layer ranges, target modules) fail here, before any work."""
    with torch.device("meta"):
        unet, size = model_for(cfg, cfg["dataset"])
        info = {"image_size": size, "backbone_params": sum(p.numel() for p in unet.parameters()), "ppc": 0}
        name = cfg["method"]["name"]
        if strategies.for_method(name).takes_method_options:
            adapter = methods.build(name, **{k: v for k, v in cfg["method"].items() if k != "name"}).attach(unet)
            info["ppc"] = adapter.ppc()
            if adapter.budget_choice is not None:
                info["budget"] = adapter.budget_choice.to_dict()
    return info


@dataclass
class CellData:
    tasks: list[list[int]]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def prepare_data(cfg: dict, dataset: data_mod.Dataset, size: int) -> CellData:
    order = data_mod.class_order(dataset.num_classes, cfg["class_order"], cfg["seed"])
    tasks = data_mod.task_classes(cfg["split"], dataset.num_classes, order)
    all_classes = list(range(dataset.num_classes))
    tx, ty = data_mod.subset(dataset.train_x, dataset.train_y, all_classes, cfg["train_per_class"], cfg["seed"])
    vx, vy = data_mod.subset(dataset.test_x, dataset.test_y, all_classes, cfg["test_per_class"], cfg["seed"])
    return CellData(tasks, data_mod.to_model_space(tx, size), ty, data_mod.to_model_space(vx, size), vy)


def _mask(y: torch.Tensor, classes: list[int]) -> torch.Tensor:
    return torch.isin(y, torch.tensor(classes))


def synthesize(model, classes: list[int], counts: dict[int, int], shape: tuple, solver: SolverConfig,
               batch_size: int, seed: int, device: torch.device, progress: bool) -> tuple[torch.Tensor, torch.Tensor, list[int], float]:
    """Samples of ``classes`` (counts[c] each), labels sorted so batches hold few classes."""
    labels = torch.cat([torch.full((counts[c],), c, dtype=torch.long) for c in classes])
    g = torch.Generator().manual_seed(seed)
    xs, nfes, t0 = [], [], time.perf_counter()
    for i in tqdm(range(0, labels.numel(), batch_size), desc="sampling", leave=False, disable=not progress):
        x, nfe = sample(model, labels[i:i + batch_size], shape, solver, generator=g, device=device)
        xs.append(x.clamp(-1, 1).cpu())
        nfes.append(nfe)
    return torch.cat(xs), labels, nfes, time.perf_counter() - t0


class Cell:
    """One run of the protocol: dataset x split x method x solver x seed at a scale.

    ``run`` is a loop over tasks that asks the cell's strategy (``bench.strategies``) what
    to train and what each task's classifier learns from; the stages it offers the
    strategy (``train_backbone``, ``train_generator``, ``synthesize``) are cached."""

    def __init__(self, cfg: dict, artifacts: str | Path | None = None, log=print):
        self.cfg = cfg
        self.log = log
        numerics.require(cfg.get("numerics", "native"))   # this process's mode; portable routes sqrt
        self.device = resolve_device(cfg["device"])
        set_deterministic(bool(cfg.get("deterministic", False)))
        self.method_name = cfg["method"]["name"]
        self.options = {k: v for k, v in cfg["method"].items() if k != "name"}
        self.dataset = data_mod.load(cfg["dataset"], cfg["data_root"])
        data_mod.parse_split(cfg["split"], self.dataset.num_classes)
        self.seed_stage("backbone-init")  # the U-Net's initial weights, whatever ran before in the process
        self.unet, self.size = model_for(cfg, self.dataset.name)
        if cfg.get("compile"):
            methods.base.hide_routing_from_compiler()   # else one compile per class set (methods/base.py)
            self.unet.compile(backend=COMPILE_BACKEND)
        self.data = prepare_data(cfg, self.dataset, self.size)
        self.paths = StagePaths(cfg, artifacts or cfg.get("workdir") or "results/artifacts")
        self.progress = bool(cfg.get("progress", True))
        self.solver = SolverConfig.from_dict(cfg["solver"])
        self.strategy = strategies.for_method(self.method_name)(self)
        self.tuning: dict | None = None  # tune=lr: candidates, scores and the chosen learning rate
        self._groups: dict[int, tuple] = {}  # task -> its classes' synthetic images (reused_samples)
        self._grid_rows: dict[int, torch.Tensor] = {}  # class -> its sample-grid row (old classes frozen)

    # ---- stages offered to the strategies -----------------------------------------------
    def stage_seed(self, stage: str, task: int = 0) -> int:
        """The seed of ``stage`` at ``task`` (from the cell's seed; see bench.seeding)."""
        return stage_seed(self.cfg["seed"], stage, task)

    def seed_stage(self, stage: str, task: int = 0) -> int:
        """Seed every global generator for ``stage`` at ``task``, before it builds or draws anything."""
        return seed_all(self.stage_seed(stage, task))

    def schedule(self, which: str) -> Schedule:
        """The ``task1`` or ``adapter`` schedule of this cell's config (a fresh copy; the adapter
        learning rate is the tuned one after ``tune=lr``)."""
        schedule = Schedule.from_dict(self.cfg["generator"][which])
        if which == "adapter" and self.tuning is not None:
            schedule.lr = self.tuning["lr"]["chosen"]
        return schedule

    def task_data(self, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Real training images and labels of ``classes`` (model space)."""
        m = _mask(self.data.train_y, classes)
        return self.data.train_x[m], self.data.train_y[m]

    def unfreeze_backbone(self) -> list[torch.nn.Parameter]:
        for p in self.unet.parameters():
            p.requires_grad_(True)
        return list(self.unet.parameters())

    def train_backbone(self) -> GeneratorInfo:
        """The shared task-1 backbone: the whole U-Net on D_1 (cached for every method)."""
        x, y = self.task_data(self.data.tasks[0])
        return self.train_generator(1, x, y, self.unfreeze_backbone(), self.unet, self.paths.backbone,
                                    self.schedule("task1"), stage="backbone")

    def train_generator(self, task: int, x: torch.Tensor, y: torch.Tensor, params: list, model: torch.nn.Module,
                        ckpt: Path, schedule: Schedule, stage: str = "generator") -> GeneratorInfo:
        """Train ``params`` of ``model`` on (x, y) with the CFM loss, checkpointed at ``ckpt``."""
        if not params:  # nothing to train (cannot happen for the registered methods)
            return GeneratorInfo()
        res = train_flow(model, params, x, y, schedule, seed=self.stage_seed(stage, task), device=self.device,
                         ckpt=ckpt, progress=self.progress, desc=f"task {task} generator", module=model,
                         key=f"{stage}:{task}")
        model.eval()
        return GeneratorInfo(res.seconds, res.steps, sum(p.numel() for p in params), res.loss, res.resumed_from)

    def counts(self, classes: list[int]) -> dict[int, int]:
        per_class = self.cfg["sampling"]["per_class"]
        return {c: per_class or int((self.data.train_y == c).sum()) for c in classes}

    def synthesize(self, model, classes: list[int], stage: str, task: int):
        """A synthetic set of ``classes`` from ``model`` (counts of the sampling config), seeded by stage and task."""
        return synthesize(model, classes, self.counts(classes), self.data.train_x.shape[1:], self.solver,
                          self.cfg["sampling"]["batch_size"], self.seed_stage(stage, task), self.device,
                          self.progress)

    def reused_samples(self, t: int):
        """The synthetic set of tasks 1..t when old classes never change (``old_classes_frozen``).

        Each task's classes are sampled once, as one group seeded by that task, and kept:
        the images of task i's classes are the same at every later task (their adapters, or
        the multitask generator, are bit-identical), so sampling them again would draw the
        same distribution at t times the cost. After a resume the groups are drawn again, identically. NFE counts each
        group once, in the row of the first task whose classifier uses it (so the record is
        the same whether the run was resumed or not); seconds are the sampling really done.
        Under adapters, task 1's classes come from the frozen backbone itself (the adapter
        contract: bit for bit), so that group is drawn once per backbone, solver and sampling
        config and shared by every method (``StagePaths.first_samples``)."""
        first = min(s for s in range(1, len(self.data.tasks) + 1) if self.strategy.classifier_data(s) == "synthetic")
        xs, ys, nfes, seconds = [], [], [], 0.0
        for i in range(1, t + 1):
            if i not in self._groups:
                shared = i == 1 and self.strategy.needs_backbone and self.strategy.old_classes_frozen
                x, y, n, secs = self.first_group() if shared else self.synthesize(
                    self.strategy.sampler(), self.data.tasks[i - 1], "sampling-task", i)
                self._groups[i] = (x, y, n)
                seconds += secs
            x, y, n = self._groups[i]
            xs.append(x)
            ys.append(y)
            if max(i, first) == t:
                nfes += n
        return torch.cat(xs), torch.cat(ys), nfes, seconds

    def first_group(self):
        """Task 1's synthetic group, drawn from the frozen backbone once and cached for every
        adapter method of the same backbone, solver and sampling config (seconds: 0 when reused)."""
        path = self.paths.first_samples
        with stage_lock(path):
            cached = load_tensors(path)
            if isinstance(cached, dict) and {"x", "y", "nfe"} <= set(cached):
                return cached["x"], cached["y"], cached["nfe"].tolist(), 0.0
            x, y, n, secs = self.synthesize(self.strategy.sampler(), self.data.tasks[0], "sampling-task", 1)
            atomic_save({"x": x, "y": y, "nfe": torch.tensor(n, dtype=torch.long)}, path)
            return x, y, n, secs

    # ---- the protocol ---------------------------------------------------------------------
    def run(self) -> Record:
        """Every task; under ``precision=bf16`` the forwards run in bfloat16 autocast (bench/precision.py)."""
        with precision.autocast(self.device, self.cfg.get("precision", "fp32")):   # bench/precision.py
            return self._run()

    def _run(self) -> Record:
        d, strategy = self.data, self.strategy
        self.unet.to(self.device)
        T = len(d.tasks)
        acc: list[list[float | None]] = []
        seconds = {"generator": [], "sampling": [], "classifier": []}
        nfe, trainable, per_class, grids = [], [], [], []
        strategy.start()
        for t, classes in enumerate(d.tasks, start=1):
            seen = [c for task in d.tasks[:t] for c in task]
            gen = strategy.train(t, classes)
            seconds["generator"].append(gen.seconds)
            trainable.append(gen.trainable)
            source = strategy.classifier_data(t)
            cached = self.paths.evaluation(t, shared_first_task=(t == 1 and source == "real"))
            with stage_lock(cached):  # two runs that need this evaluation compute it once
                row = read_json(cached, lambda r: isinstance(r, dict) and isinstance(r.get("accuracy"), list)
                                and len(r["accuracy"]) == t and all(isinstance(a, (int, float)) for a in r["accuracy"]))
                if row is None:
                    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    row = self.evaluate(t, seen, source)
                    write_json_atomic(cached, row)
                    record_provenance(cached, key=f"evaluation:{t}", start=started,
                                      seconds=row["sampling_seconds"] + row["classifier_seconds"],
                                      hardware=hardware.describe(self.device))
            seconds["sampling"].append(row["sampling_seconds"])
            seconds["classifier"].append(row["classifier_seconds"])
            nfe.append(row["nfe"])
            acc.append(row["accuracy"] + [None] * (T - t))
            per_class.append(row.get("per_class", {}))  # {} from an evaluation cached before it was kept
            grids.append(self.sample_grid(t, seen))
            shown = " ".join(f"{a:.1f}" for a in row["accuracy"])
            self.log(f"task {t}/{T} classes {classes}: accuracy per task [{shown}]  "
                     f"Abar_{t} = {sum(row['accuracy']) / t:.2f}")
        return self.record(acc, seconds, nfe, trainable, row.get("quality"), per_class, grids)

    def evaluate(self, t: int, seen: list[int], source: str) -> dict:
        """Task t's classifier, trained on ``source`` data (``real`` or ``synthetic``), on the real test set."""
        cfg, d = self.cfg, self.data
        nfes, sampling_seconds = [], 0.0
        if source == "real":
            x, y = self.task_data(seen)
        elif self.strategy.old_classes_frozen:
            x, y, nfes, sampling_seconds = self.reused_samples(t)
        else:
            x, y, nfes, sampling_seconds = self.synthesize(self.strategy.sampler(), seen, "sampling", t)
        net, secs = train_classifier(x, y, seen, cfg["classifier"], self.stage_seed("classifier", t), self.device,
                                     self.progress, desc=f"task {t} classifier")
        m = _mask(d.test_y, seen)
        pred = predict(net, d.test_x[m], self.device)
        accs = accuracy_per_task(net, d.test_x[m], d.test_y[m], d.tasks[:t], self.device, pred=pred)
        row = {"accuracy": accs, "per_class": accuracy_per_class(pred, d.test_y[m], seen), "nfe": summarize_nfe(nfes, self.solver.name),
               "sampling_seconds": sampling_seconds, "classifier_seconds": secs, "classifier_data": source}
        if cfg["fid"] and t == len(d.tasks) and source != "real":
            row["quality"] = self.quality(x, d.test_x[m])
        return row

    def feature_net(self):
        """ResNet18 on every real training image (cached): the offline FID extractor."""
        from .classifier import build_resnet18

        d, path = self.data, self.paths.feature_net
        classes = list(range(self.dataset.num_classes))
        state = load_tensors(path)
        if state is not None:
            net = build_resnet18(d.train_x.shape[1], len(classes), self.cfg["classifier"].get("width", 64))
            try:
                net.load_state_dict(state)
            except (RuntimeError, TypeError) as exc:
                quarantine(path, f"not this feature net's weights ({type(exc).__name__})")
            else:
                net.classes = classes
                return net.to(self.device).eval()
        net, _ = train_classifier(d.train_x, d.train_y, classes, self.cfg["classifier"], self.stage_seed("feature-net"),
                                  self.device, self.progress, desc="FID feature network")
        atomic_save(net.state_dict(), path)
        return net

    def quality(self, fake: torch.Tensor, real: torch.Tensor) -> dict:
        from .quality import image_quality

        extractor = self.cfg["fid_extractor"]
        net = self.feature_net() if extractor != "inception" else None
        t0 = time.perf_counter()
        q = image_quality(fake, real, extractor, net, self.device)
        return {**q, "seconds": time.perf_counter() - t0, "n_fake": len(fake), "n_real": len(real)}

    def sample_grid(self, t: int, seen: list[int]) -> str | None:
        """Task t's grid of ``sample_grid`` images per seen class (cached beside the evaluations)."""
        n = int(self.cfg.get("sample_grid", 8))
        if n == 0 or not self.strategy.has_generator:
            return None
        from .pictures import draw_samples, grid_image, readable_png, write_grid

        path = self.paths.evaluations / f"samples_task{t}_n{n}.png"
        with stage_lock(path):   # two runs of the cell draw it once
            if path.exists() and not readable_png(path):
                quarantine(path, "not a readable PNG")
            if not path.exists():
                # A row's noise is fixed per class; when old classes never change, their rows are too.
                rows = self._grid_rows if self.strategy.old_classes_frozen else {}
                todo = [c for c in seen if c not in rows]
                rows.update(draw_samples(self.strategy.sampler(), todo, n, self.data.train_x.shape[1:], self.solver,
                                         self.cfg["seed"], self.device))
                samples = {c: rows[c] for c in seen}
                spec = data_mod.spec(self.dataset.name)
                names = {c: spec.name_of(c) for c in seen}
                write_grid(grid_image(samples, names, f"{self.title()}, after task {t}"), path)
        return str(path.resolve())

    def title(self) -> str:
        """The cell's method as tables and figures name it: its title and the options the cell set."""
        return strategies.display_name(self.method_name, self.options)

    def record(self, acc, seconds, nfe, trainable, quality=None, per_class=None, grids=None) -> Record:
        la, aia, abar = average_accuracies(acc)
        adapter = self.strategy.adapter
        cfg = self.cfg
        return Record(
            cell=CellInfo(cfg["dataset"], cfg["split"], self.method_name, self.options, cfg["scale"], cfg["seed"],
                          cfg["solver"]),
            tasks=self.data.tasks, accuracy=acc, avg_accuracy=abar, la=la, aia=aia,
            ppc=adapter.ppc() if adapter is not None else 0,
            embedding_params_per_class=adapter.embedding_params_per_class() if adapter is not None else 0,
            budget=adapter.budget_choice.to_dict() if adapter is not None and adapter.budget_choice else None,
            shared_params=adapter.shared_params() if adapter is not None else 0,
            per_class_accuracy=per_class, sample_grids=grids,
            implementation=dict(adapter.implementation) if adapter is not None and adapter.implementation else None,
            trainable_per_task=trainable,
            analysis=adapter_analysis(adapter) if adapter is not None else None,
            nfe=[NFE(**n) for n in nfe], quality=quality, tuning=self.tuning,
            seconds=Seconds(**seconds, total=sum(sum(v) for v in seconds.values())),
            device=str(self.device), hardware=hardware.describe(self.device), threads=torch.get_num_threads(),
            numerics=numerics.describe(str(self.device)),
            torch=torch.__version__,
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), config=cfg)


def adapter_analysis(adapter: methods.Adapter) -> dict[str, list[dict]]:
    """Tidy analysis records of the trained adapters (Figures 3-5)."""
    from methods import analysis

    return {"importance": analysis.layer_importance(adapter), "rank": analysis.modulation_rank(adapter),
            "function_parameters": analysis.function_parameters(adapter)}


def run_cell(cfg: dict, artifacts: str | Path | None = None, log=print) -> Record:
    """Run one cell end to end and return its record."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    return Cell(cfg, artifacts, log).run()
