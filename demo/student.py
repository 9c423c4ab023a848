"""The demo's student before any training: a scaled-down `edge` student (ConvNeXt-V2 + XLM-R) saved as a DC-CLIP
folder, so that every variant (stage 1 with feature maps or logits, alignment alone) starts from the same weights
through the trainers' `--student` option."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig, AutoProcessor, set_seed

from modeling_dcclip import DCCLIPConfig, DCCLIPModel

from dcclip.trainers.student.build import student_processor

from .scales import StudentSettings


def save_initial_student(
    teacher: str, settings: StudentSettings, max_text_length: int, seed: int, output_dir: str | Path
) -> Path:
    """Build the student for `teacher` (its tokenizer, image normalisation and embedding width) and save it.

    Args:
        teacher: the teacher's folder or Hub id.
        settings: the student's tower sizes.
        max_text_length: longest caption in tokens (sizes the text tower's position table).
        seed: initial weights.
        output_dir: the folder to write (model + processor).
    """
    teacher_processor = AutoProcessor.from_pretrained(teacher)
    tokenizer = teacher_processor.tokenizer
    projection_dim = int(AutoConfig.from_pretrained(teacher).projection_dim)
    config = DCCLIPConfig(
        vision_config=settings.vision_config(),
        text_config=settings.text_config(len(tokenizer), max_text_length),
        projection_dim=projection_dim,
    )
    set_seed(seed)
    model = DCCLIPModel(config)
    output_dir = Path(output_dir)
    model.save_pretrained(output_dir)
    # the same processor as a preset student's: images normalised as the teacher's, at the student's resolution
    student_processor(settings.image_size, tokenizer, teacher_processor).save_pretrained(output_dir)
    return output_dir
