from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components import images


@dsl.component(base_image=images.TRAIN, install_kfp_package=False)
def evaluate_op(
    model: Input[Model],
    data: Input[Dataset],
    eval_turns: int,
    eval_max_new_tokens: int,
    eval_batch_size: int,
    eval_rephrasings: int,
    sandbox_url: str,
    mlflow_experiment: str,
    pipeline_run_id: str,
    metrics: Output[Metrics],
    report: Output[Markdown],
    html_report: Output[HTML],
    evaluation: Output[Dataset],
) -> bool:
    """Greedy multi-turn evaluation: Acc@t, i2c, c2i and delta per dataset.

    Returns whether the model may be registered: every verdict came from the sandbox (no sandbox error).
    """
    import os
    import shutil

    from cocos.config import EvalConfig, prefixed
    from cocos.stages import RunContext, evaluate_stage

    config = EvalConfig(**prefixed(locals(), "eval_", EvalConfig), sandbox_url=sandbox_url)
    summary = evaluate_stage(
        config, model.path, data.path, evaluation.path, RunContext(mlflow_experiment, pipeline_run_id)
    )
    for dataset, values in summary["metrics"].items():
        for key, value in values.items():
            metrics.log_metric(f"{dataset}/{key}", value)
    shutil.copyfile(os.path.join(evaluation.path, "report.md"), report.path)
    shutil.copyfile(os.path.join(evaluation.path, "report.html"), html_report.path)
    return summary["sandbox_errors"] == 0
