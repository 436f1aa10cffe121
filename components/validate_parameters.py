from kfp import dsl

from components import images


@dsl.component(base_image=images.BASE, install_kfp_package=False)
def validate_parameters_op(
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
    eval_turns: int,
    eval_max_new_tokens: int,
    eval_batch_size: int,
    eval_rephrasings: int,
    register_model_name: str,
    register_acc_t2_margin: float,
    register_c2i_ceiling: float,
    train_gpus: int,
    sandbox_url: str,
):
    """Checks every stage config, the secrets' environment and the services before any GPU task runs."""
    from cocos.preflight import run_preflight

    run_preflight(locals())
