"""slurm/distill.sh and slurm/align.sh submitted with sbatch to a real SLURM cluster (2 CPU tasks): they finish with
exit code 0 and leave a loadable DCCLIPModel; a job cancelled mid-run, resubmitted, then preempted (USR1 -> requeue)
ends with the same weights as an uninterrupted run with the same seed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from modeling_dcclip import DCCLIPModel
from dcclip.trainers.callbacks.checkpoints import COMPLETION_MARKER, find_resume_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[2]
TWO_CPU_TASKS = ("--ntasks-per-node=2",)
JOB_TIMEOUT_S = 240
# Long enough that a cancel sent right after the first complete checkpoint lands while the job still trains.
MAX_STEPS, SAVE_STEPS = 40, 4


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory) -> dict[str, Path]:
    """What the tiny configs point at: the built-in benchmark (small), its tokenizer, a tiny AltCLIP teacher, and the
    stage-1 image-only and text-only data specs."""
    from dcclip.trainers.data.spec import DataSpec, SourceSpec
    from dcclip.trainers.data.synthetic_scenes import benchmark_text_corpus, generate_benchmark
    from dcclip.trainers.teacher.model import build_altclip_teacher
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer

    root = tmp_path_factory.mktemp("stage_inputs")
    benchmark = generate_benchmark(
        root / "benchmark", n_train=64, n_eval=8, image_size=32, n_retrieval=8, shard_size=64
    )
    tokenizer = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=500, save_dir=root / "tokenizer")
    teacher, teacher_processor = build_altclip_teacher(tokenizer, image_size=32)
    teacher.save_pretrained(root / "teacher")
    teacher_processor.save_pretrained(root / "teacher")
    captions = {"en": "caption_en", "zh": "caption_zh"}
    DataSpec(sources=[SourceSpec(name="scene_images", kind="imagefolder", path=str(benchmark.train_dir))]).save(
        root / "stage1_images.yaml"
    )
    captions_file = str(benchmark.train_dir / "metadata.jsonl")
    DataSpec(
        sources=[SourceSpec(name="scene_captions", kind="json", data_files=[captions_file], image_column=None,
                            caption_columns=captions)]
    ).save(root / "stage1_texts.yaml")  # fmt: skip
    DataSpec(
        sources=[SourceSpec(name="retrieval", kind="imagefolder", path=str(benchmark.retrieval_dir),
                            caption_columns={"en": "captions_en", "zh": "captions_zh"})]
    ).save(root / "eval_pairs.yaml")  # fmt: skip
    return {
        "teacher": root / "teacher",
        "image_data": root / "stage1_images.yaml",
        "text_data": root / "stage1_texts.yaml",
        "train_data": benchmark.train_spec_imagefolder,
        "eval_data": root / "eval_pairs.yaml",
        "zero_shot_benchmark": benchmark.eval_dir,
    }


def _run_flags(output_dir: Path) -> list[str]:
    return ["--output_dir", str(output_dir), "--max_steps", str(MAX_STEPS), "--save_strategy", "steps",
            "--save_steps", str(SAVE_STEPS), "--use_cpu", "true", "--disable_tqdm", "true"]  # fmt: skip


def _stage1_config(inputs: dict[str, Path]) -> list[str]:
    """The tiny stage-1 config and the inputs it points at."""
    flags = [f"--{name}={inputs[name]}" for name in ("teacher", "image_data", "text_data")]
    return [str(REPO_ROOT / "configs/distill_tiny.yaml"), *flags]


def _distill_args(inputs: dict[str, Path], output_dir: Path) -> list[str]:
    return [*_stage1_config(inputs), *_run_flags(output_dir)]


def _log(workdir: Path, script: str, job_id: int) -> Path:
    return workdir / f"dcclip-{script}-{job_id}.log"  # the scripts' `#SBATCH --output=%x-%j.log`


def _wait_for_complete_checkpoint(output_dir: Path, newer_than: int, job_id: int, cluster, timeout: float) -> int:
    """Step of the first complete checkpoint after step `newer_than`; fails if the job ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        steps = [int(p.parent.name.split("-")[1]) for p in output_dir.glob(f"checkpoint-*/{COMPLETION_MARKER}")]
        newer = [step for step in steps if step > newer_than]
        if newer:
            return min(newer)
        assert cluster.job(job_id).state in {"PENDING", "RUNNING", "CONFIGURING"}, "the job ended before a checkpoint"
        time.sleep(0.1)
    raise AssertionError(f"no complete checkpoint after step {newer_than} within {timeout}s")


def _assert_ran_on_two_ranks(job_log: Path, checkpoint: Path) -> None:
    assert "1 node(s) x 2 process(es)" in job_log.read_text()
    assert (checkpoint / "rng_state_0.pth").exists() and (checkpoint / "rng_state_1.pth").exists()  # one per rank


@pytest.fixture(scope="module")
def distill_run(slurm_cluster, job_environment, stage_inputs, tmp_path_factory) -> dict:
    """`sbatch slurm/distill.sh configs/distill_tiny.yaml ...`, uninterrupted."""
    workdir = tmp_path_factory.mktemp("distill_job")
    output_dir = workdir / "out"
    job_id = slurm_cluster.sbatch(
        REPO_ROOT / "slurm/distill.sh", *_distill_args(stage_inputs, output_dir),
        options=TWO_CPU_TASKS, cwd=workdir, env=job_environment,
    )  # fmt: skip
    job = slurm_cluster.wait_for_state(job_id, {"COMPLETED"}, JOB_TIMEOUT_S, log=_log(workdir, "distill", job_id))
    return {"job": job, "output_dir": output_dir, "log": _log(workdir, "distill", job_id)}


def test_distill_job_exits_0_and_leaves_a_loadable_student(distill_run):
    assert distill_run["job"].exit_code == "0:0"
    output_dir = distill_run["output_dir"]
    _assert_ran_on_two_ranks(distill_run["log"], output_dir / f"checkpoint-{MAX_STEPS}")
    student = DCCLIPModel.from_pretrained(output_dir / "final")
    assert student.get_image_features(torch.zeros(1, 3, 32, 32)).pooler_output.shape == (1, student.config.projection_dim)


def test_align_job_exits_0_and_leaves_a_loadable_student(
    slurm_cluster, job_environment, stage_inputs, distill_run, tmp_path
):
    output_dir = tmp_path / "out"
    flags = [f"--{name}={stage_inputs[name]}" for name in ("train_data", "eval_data", "zero_shot_benchmark")]
    job_id = slurm_cluster.sbatch(
        REPO_ROOT / "slurm/align.sh", str(REPO_ROOT / "configs/align_tiny.yaml"),
        f"--student={distill_run['output_dir'] / 'final'}", *flags, *_run_flags(output_dir), options=TWO_CPU_TASKS, cwd=tmp_path,
        env={**job_environment, "SBATCH_TIMELIMIT": "15"},  # sbatch's own variables override the script's lines
    )  # fmt: skip
    job = slurm_cluster.wait_for_state(job_id, {"COMPLETED"}, JOB_TIMEOUT_S, log=_log(tmp_path, "align", job_id))
    assert job.exit_code == "0:0"
    assert job.time_limit == "00:15:00"
    _assert_ran_on_two_ranks(_log(tmp_path, "align", job_id), output_dir / f"checkpoint-{MAX_STEPS}")
    student = DCCLIPModel.from_pretrained(output_dir / "final")
    assert student.get_image_features(torch.zeros(1, 3, 32, 32)).pooler_output.shape == (1, student.config.projection_dim)


def test_teacher_cache_array_job_writes_one_shard_per_task(slurm_cluster, job_environment, stage_inputs, tmp_path):
    from dcclip.trainers.teacher.cache import TeacherCache

    cache_dir = tmp_path / "cache"
    job_id = slurm_cluster.sbatch(
        REPO_ROOT / "slurm/cache_teacher.sh", *_stage1_config(stage_inputs), f"--teacher_cache_dir={cache_dir}",
        "--use_cpu=true", options=("--array=0-1",), cwd=tmp_path, env=job_environment,
    )  # fmt: skip
    for task in (0, 1):
        job = slurm_cluster.wait_for_state(f"{job_id}_{task}", {"COMPLETED"}, JOB_TIMEOUT_S)
        assert job.exit_code == "0:0"
    logs = "".join(path.read_text() for path in tmp_path.glob("dcclip-teacher-cache-*.log"))
    assert "teacher cache shard 0 of 2" in logs and "teacher cache shard 1 of 2" in logs
    cache = TeacherCache(cache_dir)  # complete: both shards of both towers
    assert [shard.rows for shard in cache.shards["images"]] == [32, 32]
    assert len(cache.shards["texts"]) == 2 and cache.num_texts > 0


def test_cancelled_resubmitted_and_preempted_job_ends_with_the_uninterrupted_weights(
    slurm_cluster, job_environment, stage_inputs, distill_run, tmp_path, assert_same_weights
):
    script, args = REPO_ROOT / "slurm/distill.sh", _distill_args(stage_inputs, tmp_path / "out")
    output_dir = tmp_path / "out"

    # 1. killed outright (scancel: SIGTERM, then SIGKILL) once its first checkpoint is complete
    first = slurm_cluster.sbatch(script, *args, options=TWO_CPU_TASKS, cwd=tmp_path, env=job_environment)
    _wait_for_complete_checkpoint(output_dir, 0, first, slurm_cluster, JOB_TIMEOUT_S)
    slurm_cluster.run("scancel", str(first))
    slurm_cluster.wait_for_state(first, {"CANCELLED"}, 60)
    assert not (output_dir / "final" / "model.safetensors").exists(), "the run finished before the cancel landed"
    resume_point = find_resume_checkpoint(output_dir)
    assert resume_point is not None

    # 2. the same command resubmitted resumes on its own; then the pre-time-limit signal makes it requeue itself
    second = slurm_cluster.sbatch(script, *args, options=TWO_CPU_TASKS, cwd=tmp_path, env=job_environment)
    resumed_step = int(Path(resume_point).name.split("-")[1])
    _wait_for_complete_checkpoint(output_dir, resumed_step, second, slurm_cluster, JOB_TIMEOUT_S)
    slurm_cluster.run("scancel", "--batch", "--signal=USR1", str(second))
    requeued = slurm_cluster.wait_for_state(second, {"PENDING"}, 60, log=_log(tmp_path, "distill", second))
    assert requeued.restarts == 1
    # SLURM holds a requeued job for ~2 minutes before it may start again; the test does not wait that out
    slurm_cluster.run("scontrol", "update", f"JobId={second}", "StartTime=now")
    job = slurm_cluster.wait_for_state(second, {"COMPLETED"}, JOB_TIMEOUT_S, log=_log(tmp_path, "distill", second))
    assert job.exit_code == "0:0"

    job_log = _log(tmp_path, "distill", second).read_text()
    assert f"auto-resume: {resume_point}" in job_log
    assert "USR1 received" in job_log and f"job {second} (restart 1)" in job_log
    assert job_log.count(f"auto-resume: {output_dir}/checkpoint-") == 2 * 2  # both starts resumed, on both ranks
    assert_same_weights(output_dir / "final", distill_run["output_dir"] / "final")
