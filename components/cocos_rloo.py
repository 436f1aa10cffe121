from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import images


@dsl.component(base_image=images.TRAIN, install_kfp_package=False)
def cocos_rloo_op(
    boost_model: Input[Model],
    data: Input[Dataset],
    rloo_method: str,
    rloo_rollout_mode: str,
    rloo_steps: int,
    rloo_prompts_per_step: int,
    rloo_group_size: int,
    rloo_gamma: float,
    rloo_score_mode: str,
    rloo_kl_beta: float,
    rloo_learning_rate: float,
    rloo_temperature: float,
    rloo_max_new_tokens: int,
    rloo_micro_batch_size: int,
    rloo_checkpoint_every: int,
    rloo_seed: int,
    rloo_checkpoint_uri: str,
    sandbox_url: str,
    train_nodes: int,
    train_gpus: int,
    train_node_selector: dict,
    train_tolerations: list,
    mlflow_experiment: str,
    pipeline_run_id: str,
    model: Output[Model],
):
    """CoCoS online RLOO with the accumulated progressive reward; resumes from the newest S3 checkpoint."""
    from cocos.config import RLOOConfig, prefixed
    from cocos.stages import Placement, RunContext, rloo_stage
    from components import images

    config = RLOOConfig.for_pipeline({**prefixed(locals(), "rloo_", RLOOConfig), "sandbox_url": sandbox_url})
    checkpoints = rloo_checkpoint_uri.rstrip("/") + f"/{pipeline_run_id}" if rloo_checkpoint_uri else ""
    ctx = RunContext(mlflow_experiment, pipeline_run_id)
    placement = Placement(train_nodes, train_gpus, images.TRAIN, train_node_selector, train_tolerations)
    model.metadata.update(
        rloo_stage(config, boost_model.path, data.path, model.path, ctx, checkpoints, None, placement)
    )
