from kfp import dsl
from kfp.dsl import Dataset, Output

from components import images


@dsl.component(base_image=images.BASE, install_kfp_package=False)
def prepare_data_op(
    data_train_source: str,
    data_train_path: str,
    data_eval_sources: str,
    data_boost_source: str,
    data_boost_path: str,
    data_seed: int,
    data_train_limit: int,
    data_eval_limit: int,
    data_max_drop_share: float,
    data_synthetic_train: int,
    data_synthetic_test: int,
    mlflow_experiment: str,
    pipeline_run_id: str,
    data: Output[Dataset],
):
    """Load, convert, validate in the sandbox, decontaminate and version the train, boost and test sets."""
    from cocos.preflight import data_config
    from cocos.stages import RunContext, prepare_data_stage

    config = data_config(locals())
    data.metadata.update(prepare_data_stage(config, data.path, RunContext(mlflow_experiment, pipeline_run_id)))
