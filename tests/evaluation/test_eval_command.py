"""`dcclip eval`: the scores do not depend on --batch_size, models are named with --name LABEL=MODEL (or by folder,
with the run's name for `final/`), and the command ends with one line saying what it wrote where."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcclip.evaluation.cli import main as eval_main
from dcclip.evaluation.model_loading import default_model_name
from dcclip.evaluation.results import read_results


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Test-sized models run fastest on one thread; on a shared CPU, two threads make a batch of one 7x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The built-in benchmark (its retrieval captions repeat across images, as in `dcclip demo`), and a test-sized
    AltCLIP teacher and a tiny DC-CLIP student on its tokenizer, saved as `<run>/final` folders as training leaves
    them.

    Returns `(teacher folder, student folder, benchmark folder)`."""
    import torch

    from dcclip.trainers.data.synthetic_scenes import benchmark_text_corpus, generate_benchmark
    from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer
    from dcclip.trainers.teacher.model import build_altclip_teacher
    from modeling_dcclip import DCCLIPConfig, DCCLIPModel, DCCLIPProcessor, make_image_processor

    root = tmp_path_factory.mktemp("runs")
    benchmark = generate_benchmark(root / "benchmark", n_train=4, n_eval=20, n_retrieval=100, image_size=32).root
    tokenizer = build_bilingual_tokenizer(benchmark_text_corpus(), vocab_size=200, model_max_length=48)
    teacher, teacher_processor = build_altclip_teacher(tokenizer)
    torch.manual_seed(0)
    student = DCCLIPModel(DCCLIPConfig.from_preset("tiny", vocab_size=len(tokenizer))).eval()
    student_processor = DCCLIPProcessor(image_processor=make_image_processor(32), tokenizer=tokenizer)
    folders = root / "teacher" / "final", root / "align" / "final"
    for model, processor, folder in zip((teacher, student), (teacher_processor, student_processor), folders):
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
    return *folders, benchmark


def _scores(output: Path) -> dict:
    return {(e.model, e.task, e.language): e.scores for e in read_results(output / "results.json").scores}


def test_scores_are_the_same_at_batch_sizes_1_7_and_64_for_teacher_and_student(benchmark_run, tmp_path):
    teacher, student, benchmark = benchmark_run
    runs = {}
    for batch_size in (1, 7, 64):
        output = tmp_path / f"batch_{batch_size}"
        argv = ["--teacher", str(teacher), "--student", str(student), "--benchmark", str(benchmark / "eval"),
                "--benchmark_tasks", "colour", "count", "--retrieval", str(benchmark / "retrieval"),
                "--batch_size", str(batch_size), "--output_dir", str(output), "--no_progress"]  # fmt: skip
        assert eval_main(argv) == 0
        runs[batch_size] = _scores(output)
    assert {model for model, _, _ in runs[1]} == {"teacher/final", "align/final"}
    assert {task for _, task, _ in runs[1]} == {"colour", "count", "retrieval"}
    assert runs[7] == runs[1] and runs[64] == runs[1]  # every metric of every model, task and language


def test_identical_texts_get_identical_embeddings_whatever_batch_they_land_in(benchmark_run):
    """Why the scores above do not move: a caption that several images share is embedded once. Embedded in batches
    of different padded lengths, its copies would differ in the last bits and break retrieval's exact ties."""
    import torch

    from dcclip.evaluation.embeddings import embed_text_list
    from dcclip.evaluation.model_loading import load_evaluated_model
    from dcclip.evaluation.tasks import load_retrieval_split

    teacher_folder, _, benchmark = benchmark_run
    teacher = load_evaluated_model(str(teacher_folder), "teacher")
    captions = load_retrieval_split(benchmark / "retrieval", "retrieval").captions["zh"]
    texts = [caption for per_image in captions for caption in per_image]
    assert len(set(texts)) < len(texts)  # captions repeat across images
    for batch_size in (2, 7, 64):
        embeddings = embed_text_list(teacher.model, teacher.processor, texts, batch_size)
        first = {text: embeddings[texts.index(text)] for text in set(texts)}
        assert all(torch.equal(embeddings[i], first[text]) for i, text in enumerate(texts)), batch_size


def test_name_labels_a_model_in_every_report(benchmark_run, tmp_path, capsys):
    teacher, student, benchmark = benchmark_run
    output = tmp_path / "report"
    argv = ["--teacher", str(teacher), "--student", str(student), "--name", f"altclip={teacher}",
            "--name", f"dc-clip={student}", "--benchmark", str(benchmark / "eval"), "--benchmark_tasks", "shape",
            "--output_dir", str(output), "--no_progress"]  # fmt: skip
    assert eval_main(argv) == 0
    results = read_results(output / "results.json")
    assert [(m.name, m.role, m.path) for m in results.models] == [
        ("altclip", "teacher", str(teacher)),
        ("dc-clip", "student", str(student)),
    ]
    header = "| Task | Metric | Lang | altclip (teacher) | dc-clip | dc-clip retention |"
    assert header in (output / "results.md").read_text()
    assert capsys.readouterr().err.rstrip("\n").splitlines()[-1] == (
        f"dcclip eval: wrote results.json, results.md, scores.png to {output}"
    )


def test_default_names_say_which_run_a_final_folder_comes_from(tmp_path):
    for folder in ("runs/align/final", "runs/align/checkpoint-300", "runs/my-student"):
        (tmp_path / folder).mkdir(parents=True)
    assert default_model_name(str(tmp_path / "runs/align/final")) == "align/final"
    assert default_model_name(str(tmp_path / "runs/align/checkpoint-300")) == "align/checkpoint-300"
    assert default_model_name(str(tmp_path / "runs/my-student")) == "my-student"
    assert default_model_name("BAAI/AltCLIP") == "BAAI/AltCLIP"
