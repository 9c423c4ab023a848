"""Fixtures of the export tests: a tiny student saved as a model folder, as `dcclip export` / `prune-vocab` read it."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def saved_tiny_student(tmp_path_factory, tiny_tokenizer, tiny_processor):
    """Folder with a tiny ConvNeXt-V2 + XLM-R student (fixed seed) and its processor (32 px, bilingual tokenizer)."""
    import torch

    from modeling_dcclip import DCCLIPConfig, DCCLIPModel

    torch.manual_seed(0)
    model = DCCLIPModel(DCCLIPConfig.from_preset("tiny", vocab_size=len(tiny_tokenizer))).eval()
    folder = tmp_path_factory.mktemp("tiny_student")
    model.save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return folder
