from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components import images


@dsl.component(base_image=images.BASE, install_kfp_package=False)
def register_model_op(
    model: Input[Model],
    evaluation: Input[Dataset],
    data: Input[Dataset],
    register_model_name: str,
    register_acc_t2_margin: float,
    register_c2i_ceiling: float,
    sandbox_image: str,
    mlflow_experiment: str,
    pipeline_run_id: str,
) -> str:
    """Register a new version as `challenger`; move `champion` only if it passes the promotion gate."""
    import json

    from cocos.config import PromotionConfig
    from cocos.stages import RunContext, register_stage

    config = PromotionConfig(register_model_name, register_acc_t2_margin, register_c2i_ceiling)
    lineage = {
        "cocos.checkpoint_uri": model.metadata.get("checkpoint_uri", ""),
        "cocos.dataset_sha256": json.dumps(data.metadata.get("sha256", {}), sort_keys=True),
        "cocos.sandbox_image": sandbox_image,
        "cocos.train_config": json.dumps(model.metadata.get("config", {}), sort_keys=True)[:4000],
    }
    result = register_stage(
        config, model.path, evaluation.path, RunContext(mlflow_experiment, pipeline_run_id), lineage
    )
    return result.version
