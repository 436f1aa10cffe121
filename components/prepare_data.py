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
    from cocos.data import DataConfig
    from cocos.stages import RunContext, prepare_data_stage

    config = DataConfig(
        train_source=data_train_source,
        train_path=data_train_path or None,
        eval_sources=tuple(s.strip() for s in data_eval_sources.split(",") if s.strip()),
        boost_source=data_boost_source,
        boost_path=data_boost_path or None,
        seed=data_seed,
        train_limit=data_train_limit or None,
        eval_limit=data_eval_limit or None,
        max_drop_share=data_max_drop_share,
        synthetic_train=data_synthetic_train,
        synthetic_test=data_synthetic_test,
    )
    data.metadata.update(prepare_data_stage(config, data.path, RunContext(mlflow_experiment, pipeline_run_id)))
