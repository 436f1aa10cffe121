"""A training process for tests/cocos/test_resume.py: runs RLOO on the tiny model with S3 checkpoints.

    python tests/cocos/resume_worker.py MODEL_DIR WORK_DIR CHECKPOINT_URI LOG_FILE STEPS [HANG_AFTER_STEP]

Each finished step appends {step, lr, tasks} to LOG_FILE. With HANG_AFTER_STEP the process writes
LOG_FILE.hang after that step's checkpoint is uploaded and then waits to be killed.
"""

import json
import sys
import time
from pathlib import Path

from cocos.config import RLOOConfig
from cocos.models import load_model_and_tokenizer
from cocos.records import Problem
from cocos.train.rloo import RLOOTrainer, StepCallbacks
from tests.cocos.test_rloo import PROBLEMS, HashVerdicts


def main() -> None:
    model_dir, work_dir, checkpoint_uri, log_file, steps = sys.argv[1:6]
    hang_after = int(sys.argv[6]) if len(sys.argv) > 6 else -1
    log = Path(log_file)
    model, tokenizer = load_model_and_tokenizer(model_dir)
    config = RLOOConfig(
        steps=int(steps),
        prompts_per_step=2,
        group_size=2,
        max_new_tokens=8,
        learning_rate=1e-3,
        checkpoint_every=1,
        keep_checkpoints=10,
        seed=5,
    )
    trainer: RLOOTrainer

    def on_step(step: int, metrics: dict) -> None:
        tasks = [t.problem.task_id for t in trainer.last_trajectories] if hasattr(trainer, "last_trajectories") else []
        with log.open("a") as handle:
            handle.write(json.dumps({"step": step, "lr": metrics["train/learning_rate"], "tasks": tasks}) + "\n")

    def on_checkpoint(step: int, uri: str) -> None:
        if step == hang_after:
            Path(str(log) + ".hang").write_text(uri)
            time.sleep(600)

    problems: list[Problem] = PROBLEMS
    trainer = RLOOTrainer(
        config,
        model,
        tokenizer,
        problems,
        HashVerdicts(),
        work_dir,
        checkpoint_uri=checkpoint_uri,
        callbacks=StepCallbacks(on_step=on_step, on_checkpoint=on_checkpoint),
        run_id="resume-test",
    )
    result = trainer.train()
    trainer.save_final(Path(work_dir) / "final")
    (Path(work_dir) / "result.json").write_text(
        json.dumps({"resumed_from": result.resumed_from, "steps": result.steps_done})
    )


if __name__ == "__main__":
    main()
