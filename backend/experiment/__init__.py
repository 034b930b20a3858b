"""The paper's experiment end to end (``avatex experiment``): budgets, pipeline stages, plots, report.

    from backend.experiment import run_experiment
    run_experiment("runs/exp", budget="small")     # resumable; RUN/results holds table, plots, report

docs/experiment.md describes the stages, the budgets and the run folder.
"""

from backend.experiment.budgets import BUDGETS, Budget, get_budget
from backend.experiment.pipeline import run_experiment
from backend.experiment.stages import export_checkpoint

__all__ = ["BUDGETS", "Budget", "export_checkpoint", "get_budget", "run_experiment"]
