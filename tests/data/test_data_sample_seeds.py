"""Each training sample's random draws come from its own seed of (data seed, epoch, position): the same whichever
batch, DataLoader worker or process builds it, untouched by torch's global generator, and new each epoch."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, IterableDataset
from transformers import TrainerControl, TrainerState, TrainingArguments

from dcclip.trainers.callbacks.sample_draws import SampleDrawSeeds
from dcclip.trainers.data import LANGUAGE_IDS, ImageTextCollator
from dcclip.trainers.data.sample_seeds import DRAW_SEED, SeededRows, SeededStream, SharedEpoch, draw_seed

CAPTIONS_EN = ("a red circle", "a blue square", "a green triangle")
CAPTIONS_ZH = ("红色的圆形", "蓝色的正方形", "绿色的三角形")


def _captions(count: int) -> list[dict]:
    return [{"captions_en": list(CAPTIONS_EN), "captions_zh": list(CAPTIONS_ZH)} for _ in range(count)]


def _chosen(collator: ImageTextCollator, samples: list[dict]) -> list[tuple[int, str]]:
    """(language id, caption) the collator kept for each sample, in order."""
    batch = collator(samples)
    texts = collator.processor.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    return list(zip(batch["language"].tolist(), texts, strict=True))


def test_a_seeded_samples_draws_depend_on_its_seed_alone_and_leave_the_global_generator_untouched(tiny_processor):
    collator = ImageTextCollator(tiny_processor, bilingual="sample")
    samples = [{**sample, DRAW_SEED: draw_seed(0, 0, index)} for index, sample in enumerate(_captions(12))]
    torch.manual_seed(1)
    global_state = torch.get_rng_state()
    in_order = _chosen(collator, samples)
    assert torch.equal(torch.get_rng_state(), global_state)
    torch.manual_seed(2)
    reversed_batches = _chosen(collator, samples[6:][::-1]) + _chosen(collator, samples[:6][::-1])
    assert reversed_batches == in_order[6:][::-1] + in_order[:6][::-1]
    assert {language for language, _ in in_order} == set(LANGUAGE_IDS.values())
    assert len({caption for _, caption in in_order}) > 2  # several of the captions per language were drawn


def test_seeded_rows_draw_anew_each_epoch_and_read_batches_as_single_rows():
    rows = SeededRows(_captions(32), data_seed=5, epoch=SharedEpoch())
    first = [rows[index][DRAW_SEED] for index in range(32)]
    assert [sample[DRAW_SEED] for sample in rows.__getitems__(list(range(32)))] == first
    assert first == [draw_seed(5, 0, index) for index in range(32)]
    rows.epoch.set(1)
    assert {rows[index][DRAW_SEED] for index in range(32)}.isdisjoint(first)
    assert SeededRows(_captions(32), data_seed=6, epoch=SharedEpoch())[0][DRAW_SEED] != first[0]


def _seeds_by_row(loader: DataLoader) -> dict[int, int]:
    return {sample["row"]: sample[DRAW_SEED] for batch in loader for sample in batch}


def test_dataloader_workers_see_the_epoch_the_main_process_sets_and_give_the_seeds_of_one_process():
    epoch = SharedEpoch()
    rows = SeededRows([{"row": index} for index in range(24)], data_seed=0, epoch=epoch)
    in_process = DataLoader(rows, batch_size=4, shuffle=True, collate_fn=list)
    workers = DataLoader(rows, batch_size=4, shuffle=True, collate_fn=list, num_workers=2, persistent_workers=True)
    epoch_0 = _seeds_by_row(in_process)
    assert _seeds_by_row(workers) == epoch_0
    epoch.set(1)  # the persistent workers were started at epoch 0
    epoch_1 = _seeds_by_row(workers)
    assert epoch_1 == _seeds_by_row(in_process) == {row: draw_seed(0, 1, row) for row in range(24)}
    assert set(epoch_1.values()).isdisjoint(epoch_0.values())


class _Stream(IterableDataset):
    def __init__(self):
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        yield from ({"row": index} for index in range(6))


def test_a_seeded_stream_numbers_samples_per_worker_and_forwards_the_epoch():
    stream = _Stream()
    seeded = SeededStream(stream, data_seed=3, epoch=SharedEpoch())
    assert [sample[DRAW_SEED] for sample in seeded] == [draw_seed(3, 0, 0, ordinal) for ordinal in range(6)]
    seeded.set_epoch(2)
    assert stream.epochs == [2]
    replayed = [sample[DRAW_SEED] for sample in seeded]
    assert replayed == [sample[DRAW_SEED] for sample in seeded] == [draw_seed(3, 2, 0, n) for n in range(6)]


@pytest.mark.parametrize(("epoch", "expected"), [(0, 0), (1.5, 1), (2.0, 2), (2.999, 2)])
def test_callback_sets_the_epoch_the_trainer_is_in(epoch, expected, tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), seed=4, report_to="none", use_cpu=True)
    draws = SampleDrawSeeds.for_run(args)
    rows = draws.training_data(_captions(2))
    draws.on_epoch_begin(args, TrainerState(epoch=epoch), TrainerControl())
    assert rows[1][DRAW_SEED] == draw_seed(4, expected, 1)
    # evaluation draws stay those of epoch 0, so every evaluation scores the same captions
    assert draws.evaluation_data(_captions(2))[1][DRAW_SEED] == draw_seed(4, 0, 1)


def test_data_seed_takes_precedence_over_seed(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), seed=4, data_seed=9, report_to="none", use_cpu=True)
    assert SampleDrawSeeds.for_run(args).data_seed == 9
