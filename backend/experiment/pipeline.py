"""``avatex experiment``: the paper's experiment end to end, resumable, in one run folder.

    RUN/experiment.json   what this run is (budget, seed, data source); a re-run must ask for the same
    RUN/timings.json      wall time and status of every stage
    RUN/avatars/          sample avatars (synth stage; absent with --data / --meshes)
    RUN/data/             the relit dataset (render stage; absent with --data)
    RUN/train/geometry    baseline, geometry stage: netG from scratch on clear renders
    RUN/train/baseline    baseline, colour stage: netC from scratch on clear renders, L1
    RUN/train/l1, ssim    the baseline's netC fine-tuned on every level, netG frozen: L1 / patch-SSIM
    RUN/models/           the three models without optimiser state (baseline.pt, l1.pt, ssim.pt)
    RUN/eval/             evaluate_runs output: evaluation.json, kept meshes + per-vertex errors
    RUN/results/          table.md/csv, evaluation.json, plots/, images/, report.md, command.md

Every stage first checks whether its output is complete and skips if so; training stages resume from
their last checkpoint and the evaluation from its per-item file, so a killed experiment re-run with the
same command continues where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from avatex_core.atomic import write_json
from avatex_core.progress import NULL, Progress
from backend.errors import InputError
from backend.experiment import stages
from backend.experiment.budgets import BASELINE_LEVEL, Budget, get_budget
from backend.experiment.report import LABELS as MODEL_LABELS
from backend.experiment.report import MODELS

FORMAT = "avatex-experiment"
FORMAT_VERSION = 1
TRAININGS = ("geometry", "baseline", "l1", "ssim")
STAGE_TITLES = {
    "synth": "synthesising sample avatars",
    "render": "rendering the relit dataset",
    "geometry": "baseline, geometry stage (netG on clear renders)",
    "baseline": "baseline, colour stage (netC on clear renders, L1)",
    "l1": "fine-tuning netC on every level, L1 (netG frozen)",
    "ssim": "fine-tuning netC on every level, patch-SSIM (netG frozen)",
    "export": "exporting the three models",
    "evaluate": "evaluating on the held-out subjects",
    "report": "writing table, plots and report",
}
FIXTURE_SYNTH_SEED = 8
"""The committed test avatars (tests/fixtures/avatars) are ``avatex synth --seed 8``: the demo's held-out
avatar must not be trained on, so --seed 8 without --data/--meshes is refused."""


@dataclass(frozen=True)
class Paths:
    """The run folder's layout (module docstring)."""

    root: Path

    @property
    def spec(self) -> Path:
        return self.root / "experiment.json"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    @property
    def avatars(self) -> Path:
        return self.root / "avatars"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def results(self) -> Path:
        return self.root / "results"


def _spec(budget: Budget, seed: int, source: dict[str, Any]) -> dict[str, Any]:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "budget": budget.to_dict(), "seed": seed,
            "source": source}


def _check_spec(path: Path, spec: dict[str, Any]) -> None:
    """A run folder holds one experiment: a re-run must ask for the same one (else: clear error)."""
    import json

    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InputError(f"{path} is not readable ({exc}); choose another --out") from None
    if old.get("format") != FORMAT:
        raise InputError(f"{path} is not an avatex experiment file; choose another --out")
    diffs = []
    for key in ("seed", "source"):
        if old.get(key) != spec[key]:
            diffs.append(f"{key}: {old.get(key)!r} in the run, {spec[key]!r} now")
    for key, value in spec["budget"].items():
        if old.get("budget", {}).get(key) != value:
            diffs.append(f"budget.{key}: {old.get('budget', {}).get(key)!r} in the run, {value!r} now")
    if diffs:
        raise InputError(f"{path.parent} holds a different experiment ({'; '.join(diffs[:4])}"
                         f"{'; ...' if len(diffs) > 4 else ''}); re-run it with its own options to resume, "
                         f"or choose another --out")


class _Clock:
    """Stage timings (kept across resumed runs in timings.json) and the overall ETA."""

    def __init__(self, path: Path, estimates: dict[str, float]) -> None:
        import json

        self.path = path
        self.estimates = estimates
        self.timings: dict[str, dict[str, Any]] = {}
        if path.is_file():
            try:
                self.timings = json.loads(path.read_text(encoding="utf-8")).get("stages", {})
            except ValueError:
                self.timings = {}
        self.measured = 0.0
        self.estimated = 0.0

    def factor(self) -> float:
        """How much slower than estimated this machine is, from the stages run in this session; five
        minutes of prior at the estimate keep one short stage from swinging the ETA. Within [0.5, 4]."""
        prior = 300.0
        return min(4.0, max(0.5, (self.measured + prior) / (self.estimated + prior)))

    def eta(self, remaining: list[str], current_left_s: float = 0.0) -> float:
        return current_left_s + self.factor() * sum(self.estimates.get(s, 0.0) for s in remaining)

    def record(self, stage: str, wall_s: float | None, status: str, extra: dict | None = None) -> None:
        entry = dict(self.timings.get(stage, {}))
        if wall_s is not None:
            entry["wall_s"] = round(wall_s, 1)
            entry["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            if stage in self.estimates and status == "done":
                self.measured += wall_s
                self.estimated += self.estimates[stage]
        entry["status"] = status if wall_s is not None or "status" not in entry else entry["status"]
        if extra:
            entry.update(extra)
        self.timings[stage] = entry
        self.save()

    def save(self) -> None:
        total = sum(float(t.get("wall_s", 0.0)) for t in self.timings.values())
        write_json(self.path, {"stages": self.timings, "total_wall_s": round(total, 1), "machine": machine()})


def machine() -> dict[str, Any]:
    import torch

    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch_threads": torch.get_num_threads()}
    with contextlib.suppress(OSError):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return info


def estimates_for(budget: Budget, views: int, train_subjects: int, test_subjects: int, levels: int,
                  eval_views: int, synth: bool, render: bool) -> dict[str, float]:
    """Rough seconds per stage from the budget's per-unit costs (only for the ETA)."""
    c = budget.cost
    color_val = c.get("eval_item_s", 10.0) * 0.1 * test_subjects * levels  # one validation pass
    subjects = train_subjects + test_subjects

    def color_run(run: str) -> float:
        steps = budget.setting("steps", run)
        validations = steps // budget.setting("val_every", run) + 2
        return steps * c.get("color_step_s", 1.0) + color_val * validations

    return {
        "synth": (5.0 + subjects * c.get("synth_s", 2.0)) if synth else 0.0,
        "render": subjects * views * (levels + 1) * c.get("image_s", 0.4) if render else 0.0,
        "geometry": train_subjects * c.get("cache_s", 10.0)
        + budget.setting("steps", "geometry") * c.get("geometry_step_s", 1.0),
        "baseline": color_run("baseline"),
        "l1": color_run("finetune"),
        "ssim": color_run("finetune"),
        "export": 3.0,
        "evaluate": test_subjects * eval_views * levels * c.get("eval_item_s", 10.0),
        "report": c.get("report_s", 60.0),
    }


def default_threads(device: str | None) -> int:
    """Torch threads for CPU work: half the cores (at least one).

    Measured on the 2-core development machine while other jobs ran: a colour step took 0.5 s with one
    thread and 5-10 s with two (OpenMP threads wait on each other whenever one is descheduled); the other
    half of the cores feeds the data loader worker and Blender.
    """
    import torch

    if device and str(device).startswith("cuda") or (device is None and torch.cuda.is_available()):
        return torch.get_num_threads()
    return max(1, (os.cpu_count() or 2) // 2)


def run_experiment(out: str | Path, *, budget: str | Budget = "small", data: str | Path | None = None,
                   meshes: list[str | Path] | None = None, subjects: int | None = None, seed: int = 0,
                   device: str | None = None, threads: int | None = None, progress: Progress = NULL,
                   verbose: bool = True,
                   command: str | None = None) -> dict[str, Any]:
    """Run (or continue) the experiment in ``out``; returns the table, paths and timings.

    Data: ``data`` (an existing relit dataset with a test split), ``meshes`` (scans to render), or by
    default ``budget.subjects`` (``subjects`` overrides) sample avatars synthesised with ``seed``.
    ``progress`` gets reports with ``stage`` = a stage name, ``fraction`` of the whole experiment, and
    ``info`` with ``stage_index``, ``stages``, ``title``, ``eta_s`` and the stage's own details (its own
    stage as ``detail``); cancelling it stops the experiment at the next step, resumably. ``verbose``
    lets the inner steps draw their own tqdm bars (the CLI).
    """
    import torch

    if data is not None and meshes:
        raise InputError("give either --data (a rendered dataset) or --meshes (meshes to render), not both")
    if data is not None and subjects is not None:
        raise InputError("--subjects sets how many avatars to synthesise; it does not apply with --data")
    b = budget if isinstance(budget, Budget) else get_budget(budget)
    if meshes:
        if subjects is not None:
            raise InputError("--subjects does not apply with --meshes (every mesh given is used)")
        mesh_paths = [Path(m).expanduser().resolve() for m in meshes]
        missing = [str(m) for m in mesh_paths if not m.is_file()]
        if missing:
            raise InputError(f"mesh file(s) not found: {', '.join(missing)}")
        if len(mesh_paths) < 2:
            raise InputError("--meshes needs at least two meshes (one to train on, one held out)")
        b = dataclasses.replace(b, subjects=len(mesh_paths),
                                test_subjects=min(b.test_subjects, max(1, len(mesh_paths) // 5)))
        source = {"kind": "meshes", "paths": [str(m) for m in mesh_paths]}
    elif data is not None:
        source = {"kind": "dataset", "path": str(Path(data).expanduser().resolve())}
    else:
        b = b.with_subjects(subjects)
        if seed == FIXTURE_SYNTH_SEED:
            raise InputError(f"--seed {FIXTURE_SYNTH_SEED} would synthesise the test fixtures' avatars "
                             "(tests/fixtures/avatars, among them the demo's held-out avatar_0002); "
                             "choose another seed")
        source = {"kind": "synth", "subjects": b.subjects, "synth_seed": seed}
    if threads is not None and threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")

    paths = Paths(Path(out).expanduser().resolve())
    paths.root.mkdir(parents=True, exist_ok=True)
    spec = _spec(b, seed, source)
    _check_spec(paths.spec, spec)
    write_json(paths.spec, spec)

    data_root = Path(source["path"]) if source["kind"] == "dataset" else paths.data
    if source["kind"] == "dataset":
        ds = stages.check_dataset(data_root)  # the clear error for a dataset without a test split
        levels, views = list(ds.levels), len(ds.views)
        train_n, test_n = len(ds.split("train")), len(ds.split("test"))
    else:
        levels, views = list(b.levels), b.views
        train_n, test_n = b.subjects - b.test_subjects, b.test_subjects
    eval_views = [v for v in (b.eval_views if b.eval_views is not None else range(views)) if v < views] or [0]
    estimates = estimates_for(b, views, train_n, test_n, len(levels), len(eval_views),
                              synth=source["kind"] == "synth", render=source["kind"] != "dataset")
    order = [s for s in STAGE_TITLES if estimates.get(s, 1.0) > 0 or s in ("export", "report")]
    clock = _Clock(paths.timings, estimates)

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads(device))
    started = time.monotonic()

    def report(stage: str, within: float, info: dict | None = None, left_s: float | None = None) -> None:
        i = order.index(stage)
        est = clock.estimates.get(stage, 0.0) * clock.factor()
        current_left = left_s if left_s is not None else est * (1.0 - within)
        eta = clock.eta(order[i + 1:], current_left)
        done_est = sum(clock.estimates.get(s, 0.0) for s in order[:i])
        done_est += clock.estimates.get(stage, 0.0) * within
        total_est = sum(clock.estimates.get(s, 0.0) for s in order) or 1.0
        details = dict(info or {})
        for key in ("eta_s", "elapsed_s"):  # a stage's own timing (training reports them) keeps its name
            if key in details:
                details[f"stage_{key}"] = details.pop(key)
        details.update(stage_index=i + 1, stages=len(order), title=STAGE_TITLES[stage], eta_s=eta,
                       elapsed_s=time.monotonic() - started)
        progress.report(stage, done_est / total_est, **details)

    def inner(name: str, forward: Callable[[str, float, dict], None] | None = None) -> Progress:
        """The Progress a stage's own work gets: its reports become stage ``name``'s (their own stage as
        ``detail``), and it is cancelled with ``progress``."""
        return Progress(forward or (lambda s, f, info: report(name, f, {"detail": s, **info})),
                        should_stop=lambda: progress.cancelled)

    def stage(name: str, done: bool, work: Callable[[], Any], extra: Callable[[], dict] | None = None) -> Any:
        progress.check(f"experiment stopped before stage {name}; run the same command to resume")
        if done:
            clock.record(name, None, "done", None)
            report(name, 1.0, {"skipped": True})
            return None
        report(name, 0.0, {"skipped": False})
        t = time.monotonic()
        result = work()
        clock.record(name, time.monotonic() - t, "done", extra() if extra else None)
        report(name, 1.0, {"skipped": False, "wall_s": time.monotonic() - t})
        return result

    try:
        # -- data ---------------------------------------------------------------------------------
        if source["kind"] == "synth":
            stage("synth", stages.avatars_done(paths.avatars, b.subjects),
                  lambda: stages.synthesize_avatars(
                      paths.avatars, b, seed, progress=inner("synth")))
            mesh_list = stages.avatar_paths(paths.avatars, b.subjects)
        elif source["kind"] == "meshes":
            mesh_list = [Path(p) for p in source["paths"]]
        if source["kind"] != "dataset":
            stage("render", stages.dataset_complete(paths.data, b.subjects, b.views),
                  lambda: stages.render_dataset(mesh_list, paths.data, b, seed, b.test_subjects,
                                                threads=0, progress=inner("render")))
            ds = stages.check_dataset(paths.data)
            levels = list(ds.levels)

        # -- training -----------------------------------------------------------------------------
        configs = stages.training_configs(b, data_root, levels, paths.train, seed, device, verbose)
        finals: dict[str, Path] = {}
        previous = {"baseline": "geometry", "l1": "baseline", "ssim": "baseline"}
        for name in TRAININGS:
            cfg = dict(configs[name])
            if name in previous:
                cfg["init"] = str(finals[previous[name]])

            def work(cfg=cfg, name=name) -> Path:
                def on_progress(s: str, f: float, info: dict) -> None:
                    left = info.get("eta_s") if s == "train" else None
                    report(name, f if s == "train" else 0.0, {"detail": s, **info}, left_s=left)
                return stages.train_run(cfg, progress=inner(name, on_progress))[0]

            done = stages.finished_checkpoint(Path(cfg["out"]), int(cfg["steps"]))
            ran = stage(name, done is not None, work, lambda cfg=cfg: {"steps": cfg["steps"]})
            finals[name] = done if done is not None else ran

        # -- export -------------------------------------------------------------------------------
        model_files = {m: paths.models / f"{m}.pt" for m in MODELS}

        def fresh(m: str) -> bool:
            f = model_files[m]
            return f.is_file() and f.stat().st_mtime >= finals[m].stat().st_mtime

        def export() -> None:
            for m in MODELS:
                if fresh(m):  # only models whose training changed are written again
                    continue
                stages.export_checkpoint(finals[m], model_files[m], {
                    "experiment": str(paths.root), "model": m, "label": MODEL_LABELS[m], "budget": b.name,
                    "seed": seed, "data": source, "levels_trained": [BASELINE_LEVEL] if m == "baseline"
                    else levels, "command": command or ""})

        stage("export", all(fresh(m) for m in MODELS), export)

        # -- evaluation ---------------------------------------------------------------------------
        from backend.evaluation import evaluate_runs, load_evaluation

        eval_json = paths.eval / "evaluation.json"
        finished_eval = paths.eval / "finished.json"

        def evaluate() -> None:
            ev = evaluate_runs({m: model_files[m] for m in MODELS}, data_root, split="test", levels=levels,
                               views=eval_views, resolution=b.eval_resolution, k=b.k, device=device,
                               image_metrics=b.image_metrics, novel_views=b.novel_views, out_dir=paths.eval,
                               keep_meshes=True, progress=inner("evaluate"))
            write_json(finished_eval, {"items": len(ev.per_item), "models": list(ev.models)})

        newest_model = max(f.stat().st_mtime for f in model_files.values())
        stage("evaluate", finished_eval.is_file() and eval_json.is_file()
              and finished_eval.stat().st_mtime >= newest_model, evaluate)
        evaluation = load_evaluation(eval_json)

        # -- report -------------------------------------------------------------------------------
        from backend.experiment import report as report_mod

        results = paths.results
        report_done = (results / "report.md").is_file() and \
            (results / "report.md").stat().st_mtime >= eval_json.stat().st_mtime

        def write_report() -> None:
            report_mod.write_results(
                results, evaluation, run=paths.root, data_root=data_root, budget=b, seed=seed, source=source,
                train_dirs={n: Path(configs[n]["out"]) for n in TRAININGS}, timings=clock.timings,
                command=command, machine_info=machine(), report_subjects=b.report_subjects,
                report_view=b.report_view, size=b.report_size,
                progress=inner("report"))
        stage("report", report_done, write_report)
        clock.save()
        report_mod.write_command(results, command=command, timings=clock.timings, machine_info=machine(),
                                 budget=b, source=source, seed=seed)
        return {"run": str(paths.root), "results": str(results), "table": evaluation.table,
                "models": {m: str(f) for m, f in model_files.items()}, "timings": clock.timings,
                "wall_s": time.monotonic() - started}
    finally:
        torch.set_num_threads(previous_threads)


