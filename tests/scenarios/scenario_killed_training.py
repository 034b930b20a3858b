"""A training run that SIGKILLs its own process right after the checkpoint of a given step.

``python scenario_killed_training.py CONFIG_JSON KILL_STEP`` with the repository on PYTHONPATH: the
hard kill leaves exactly what a crash would, for the resume test to pick up.
"""

import json
import os
import signal
import sys

from avatex_core.progress import Progress
from backend.train import run_training


def main(config: dict, kill_step: int) -> None:
    def progress(stage: str, fraction: float, info: dict) -> None:
        if stage == "checkpoint" and info["step"] == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)

    run_training(config, progress=Progress(progress))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]), int(sys.argv[2]))
