"""The CoCoS training DAG: validate_parameters -> prepare_data -> boost_sft -> cocos_rloo -> evaluate ->
(if the evaluation is clean) register_model.

Pipeline parameters are stage-prefixed, as the Kubeflow UI lists them:

- data_*: training source (`synthetic` needs no download; `mbpp` reads MBPP train), its path (local
  file or s3:// URI; empty: the dataset hub, or a local copy when present), evaluation sources
  (comma-separated: humaneval, mbpp, odex, synthetic), boost SFT source (`synthetic` or `kodcode`),
  limits for small runs (0: no limit), the share of problems the validation gate may drop, the seed.
- model_reference: the starting model: `packaged:smollm2`, a local folder, an s3:// URI, a hub id.
- sft_*: boost SFT (paper: lr 2e-5, weight decay 0.1, 1000 steps, global batch 256).
- rloo_*: CoCoS RLOO: method (cocos, cocos_binary, turn_rl, score_stage1), rollout mode
  (independent, shared_turn1), steps, prompts per step, group size k, gamma, score mode, KL beta,
  learning rate, temperature, max new tokens, checkpoint interval and S3 prefix (the run id is appended).
- eval_*: number of turns, max new tokens, batch size, and how many of the five rephrased correction
  instructions to evaluate as well (robustness, paper Table 6; 0 skips it).
- register_*: registered model name, Acc@t2 margin over the champion, c2i ceiling.
- train_*: cluster placement of the SFT and RLOO tasks: nodes (more than one runs the stage as a
  Kubeflow Trainer TrainJob created by the task), GPUs per node, accelerator type, node selector and
  tolerations, ignored by the local runner.
- mlflow_experiment, sandbox_url (empty: a local fork-server sandbox in the task's pod), sandbox_image.
- s3_secret / mlflow_secret: Kubernetes secrets whose keys become the tasks' environment.
"""

from kfp import dsl, kubernetes

from components import images
from components.boost_sft import boost_sft_op
from components.cocos_rloo import cocos_rloo_op
from components.evaluate import evaluate_op
from components.prepare_data import prepare_data_op
from components.register_model import register_model_op
from components.validate_parameters import validate_parameters_op

S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
}
MLFLOW_SECRET_KEYS = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}


def _with_services(task: dsl.PipelineTask, s3_secret: str, mlflow_secret: str) -> dsl.PipelineTask:
    """S3 and MLflow settings come from Kubernetes secrets by name, never from parameters."""
    kubernetes.use_secret_as_env(task, secret_name=s3_secret, secret_key_to_env=S3_SECRET_KEYS)
    kubernetes.use_secret_as_env(task, secret_name=mlflow_secret, secret_key_to_env=MLFLOW_SECRET_KEYS)
    return task


def _on_gpu(
    task: dsl.PipelineTask, gpus: int, accelerator: str, node_selector: dict | str, tolerations: list | str
) -> dsl.PipelineTask:
    task.set_accelerator_type(accelerator).set_accelerator_limit(gpus)
    task.set_cpu_request("8").set_memory_request("64G")
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


@dsl.pipeline(name="cocos-self-correction", description="CoCoS: boost SFT, online RLOO, evaluation, promotion")
def cocos_pipeline(
    data_train_source: str = "synthetic",
    data_train_path: str = "",
    data_eval_sources: str = "humaneval,synthetic",
    data_boost_source: str = "synthetic",
    data_boost_path: str = "",
    data_seed: int = 0,
    data_train_limit: int = 0,
    data_eval_limit: int = 0,
    data_max_drop_share: float = 0.05,
    data_synthetic_train: int = 200,
    data_synthetic_test: int = 40,
    model_reference: str = "packaged:smollm2",
    sft_learning_rate: float = 2e-5,
    sft_weight_decay: float = 0.1,
    sft_max_steps: int = 1000,
    sft_per_device_batch_size: int = 8,
    sft_gradient_accumulation_steps: int = 8,
    sft_max_length: int = 1024,
    sft_bf16: bool = True,
    sft_deepspeed_config: str = "",
    sft_max_eval_examples: int = 512,
    rloo_method: str = "cocos",
    rloo_rollout_mode: str = "independent",
    rloo_steps: int = 1500,
    rloo_prompts_per_step: int = 64,
    rloo_group_size: int = 2,
    rloo_gamma: float = 0.5,
    rloo_score_mode: str = "ratio",
    rloo_kl_beta: float = 0.01,
    rloo_learning_rate: float = 1e-5,
    rloo_temperature: float = 0.9,
    rloo_max_new_tokens: int = 512,
    rloo_micro_batch_size: int = 8,
    rloo_checkpoint_every: int = 100,
    rloo_seed: int = 0,
    rloo_checkpoint_uri: str = "s3://cocos/checkpoints",
    eval_turns: int = 2,
    eval_max_new_tokens: int = 512,
    eval_batch_size: int = 16,
    eval_rephrasings: int = 0,
    register_model_name: str = "cocos-self-correct",
    register_acc_t2_margin: float = 0.0,
    register_c2i_ceiling: float = 0.05,
    train_nodes: int = 1,
    train_gpus: int = 4,
    train_accelerator: str = "nvidia.com/gpu",
    train_node_selector: dict = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},  # noqa: B006 (kfp default)
    train_tolerations: list = [  # noqa: B006 (kfp default)
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ],
    mlflow_experiment: str = "cocos",
    sandbox_url: str = "",
    sandbox_image: str = images.SANDBOX,
    s3_secret: str = "cocos-s3",
    mlflow_secret: str = "cocos-mlflow",
):
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    preflight = validate_parameters_op(
        data_train_source=data_train_source,
        data_train_path=data_train_path,
        data_eval_sources=data_eval_sources,
        data_boost_source=data_boost_source,
        data_boost_path=data_boost_path,
        data_seed=data_seed,
        data_train_limit=data_train_limit,
        data_eval_limit=data_eval_limit,
        data_max_drop_share=data_max_drop_share,
        data_synthetic_train=data_synthetic_train,
        data_synthetic_test=data_synthetic_test,
        model_reference=model_reference,
        sft_learning_rate=sft_learning_rate,
        sft_weight_decay=sft_weight_decay,
        sft_max_steps=sft_max_steps,
        sft_per_device_batch_size=sft_per_device_batch_size,
        sft_gradient_accumulation_steps=sft_gradient_accumulation_steps,
        sft_max_length=sft_max_length,
        sft_bf16=sft_bf16,
        sft_deepspeed_config=sft_deepspeed_config,
        sft_max_eval_examples=sft_max_eval_examples,
        rloo_method=rloo_method,
        rloo_rollout_mode=rloo_rollout_mode,
        rloo_steps=rloo_steps,
        rloo_prompts_per_step=rloo_prompts_per_step,
        rloo_group_size=rloo_group_size,
        rloo_gamma=rloo_gamma,
        rloo_score_mode=rloo_score_mode,
        rloo_kl_beta=rloo_kl_beta,
        rloo_learning_rate=rloo_learning_rate,
        rloo_temperature=rloo_temperature,
        rloo_max_new_tokens=rloo_max_new_tokens,
        rloo_micro_batch_size=rloo_micro_batch_size,
        rloo_checkpoint_every=rloo_checkpoint_every,
        rloo_seed=rloo_seed,
        rloo_checkpoint_uri=rloo_checkpoint_uri,
        eval_turns=eval_turns,
        eval_max_new_tokens=eval_max_new_tokens,
        eval_batch_size=eval_batch_size,
        eval_rephrasings=eval_rephrasings,
        register_model_name=register_model_name,
        register_acc_t2_margin=register_acc_t2_margin,
        register_c2i_ceiling=register_c2i_ceiling,
        train_gpus=train_gpus,
        sandbox_url=sandbox_url,
    ).set_display_name("validate parameters")
    preflight.set_caching_options(False)
    _with_services(preflight, s3_secret, mlflow_secret)

    data = prepare_data_op(
        data_train_source=data_train_source,
        data_train_path=data_train_path,
        data_eval_sources=data_eval_sources,
        data_boost_source=data_boost_source,
        data_boost_path=data_boost_path,
        data_seed=data_seed,
        data_train_limit=data_train_limit,
        data_eval_limit=data_eval_limit,
        data_max_drop_share=data_max_drop_share,
        data_synthetic_train=data_synthetic_train,
        data_synthetic_test=data_synthetic_test,
        mlflow_experiment=mlflow_experiment,
        pipeline_run_id=run_id,
    ).set_display_name("prepare data")
    data.after(preflight)
    _with_services(data, s3_secret, mlflow_secret)

    sft = boost_sft_op(
        data=data.outputs["data"],
        model_reference=model_reference,
        sft_learning_rate=sft_learning_rate,
        sft_weight_decay=sft_weight_decay,
        sft_max_steps=sft_max_steps,
        sft_per_device_batch_size=sft_per_device_batch_size,
        sft_gradient_accumulation_steps=sft_gradient_accumulation_steps,
        sft_max_length=sft_max_length,
        sft_bf16=sft_bf16,
        sft_deepspeed_config=sft_deepspeed_config,
        sft_max_eval_examples=sft_max_eval_examples,
        train_nodes=train_nodes,
        train_gpus=train_gpus,
        train_node_selector=train_node_selector,
        train_tolerations=train_tolerations,
        mlflow_experiment=mlflow_experiment,
        pipeline_run_id=run_id,
    ).set_display_name("boost SFT")
    sft.set_caching_options(False)
    _with_services(
        _on_gpu(sft, train_gpus, train_accelerator, train_node_selector, train_tolerations), s3_secret, mlflow_secret
    )

    rloo = cocos_rloo_op(
        boost_model=sft.outputs["boost_model"],
        data=data.outputs["data"],
        rloo_method=rloo_method,
        rloo_rollout_mode=rloo_rollout_mode,
        rloo_steps=rloo_steps,
        rloo_prompts_per_step=rloo_prompts_per_step,
        rloo_group_size=rloo_group_size,
        rloo_gamma=rloo_gamma,
        rloo_score_mode=rloo_score_mode,
        rloo_kl_beta=rloo_kl_beta,
        rloo_learning_rate=rloo_learning_rate,
        rloo_temperature=rloo_temperature,
        rloo_max_new_tokens=rloo_max_new_tokens,
        rloo_micro_batch_size=rloo_micro_batch_size,
        rloo_checkpoint_every=rloo_checkpoint_every,
        rloo_seed=rloo_seed,
        rloo_checkpoint_uri=rloo_checkpoint_uri,
        sandbox_url=sandbox_url,
        train_nodes=train_nodes,
        train_gpus=train_gpus,
        train_node_selector=train_node_selector,
        train_tolerations=train_tolerations,
        mlflow_experiment=mlflow_experiment,
        pipeline_run_id=run_id,
    ).set_display_name("CoCoS RLOO")
    rloo.set_caching_options(False)
    _with_services(
        _on_gpu(rloo, train_gpus, train_accelerator, train_node_selector, train_tolerations), s3_secret, mlflow_secret
    )

    evaluation = evaluate_op(
        model=rloo.outputs["model"],
        data=data.outputs["data"],
        eval_turns=eval_turns,
        eval_max_new_tokens=eval_max_new_tokens,
        eval_batch_size=eval_batch_size,
        eval_rephrasings=eval_rephrasings,
        sandbox_url=sandbox_url,
        mlflow_experiment=mlflow_experiment,
        pipeline_run_id=run_id,
    ).set_display_name("evaluate")
    evaluation.set_caching_options(False)
    _with_services(
        _on_gpu(evaluation, 1, train_accelerator, train_node_selector, train_tolerations), s3_secret, mlflow_secret
    )

    # A single output: kfp's local runner resolves conditions only on a task's `Output`.
    with dsl.If(evaluation.outputs["Output"] == True, name="evaluation-clean"):  # noqa: E712 (kfp condition)
        register = register_model_op(
            model=rloo.outputs["model"],
            evaluation=evaluation.outputs["evaluation"],
            data=data.outputs["data"],
            register_model_name=register_model_name,
            register_acc_t2_margin=register_acc_t2_margin,
            register_c2i_ceiling=register_c2i_ceiling,
            sandbox_image=sandbox_image,
            mlflow_experiment=mlflow_experiment,
            pipeline_run_id=run_id,
        ).set_display_name("register model")
        register.set_caching_options(False)
        _with_services(register, s3_secret, mlflow_secret)
