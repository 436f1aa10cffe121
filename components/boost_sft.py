from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import images


@dsl.component(base_image=images.TRAIN, install_kfp_package=False)
def boost_sft_op(
    data: Input[Dataset],
    model_reference: str,
    sft_learning_rate: float,
    sft_weight_decay: float,
    sft_max_steps: int,
    sft_per_device_batch_size: int,
    sft_gradient_accumulation_steps: int,
    sft_max_length: int,
    sft_bf16: bool,
    sft_deepspeed_config: str,
    sft_max_eval_examples: int,
    train_nodes: int,
    train_gpus: int,
    train_node_selector: dict,
    train_tolerations: list,
    mlflow_experiment: str,
    pipeline_run_id: str,
    boost_model: Output[Model],
):
    """Boost SFT on two-turn examples (turn 1 and correction turn, 1:1), loss on completion tokens only."""
    from cocos.config import SFTConfig, prefixed
    from cocos.stages import Placement, RunContext, boost_sft_stage
    from components import images

    config = SFTConfig(**prefixed(locals(), "sft_", SFTConfig))
    ctx = RunContext(mlflow_experiment, pipeline_run_id)
    placement = Placement(train_nodes, train_gpus, images.TRAIN, train_node_selector, train_tolerations)
    boost_model.metadata.update(boost_sft_stage(config, model_reference, data.path, boost_model.path, ctx, placement))
