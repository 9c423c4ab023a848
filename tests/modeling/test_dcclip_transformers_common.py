"""DCCLIPModel passes transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), set up as transformers'
`CLIPModelTest` sets them up, for the `tiny` (ConvNeXt-V2 + XLM-R) and `tiny-vit` (ViT + BERT) students.

The mixins are not in the transformers wheel: they are in the `tests/` folder of the source distribution of the
installed transformers version, which pip downloads from the package registry once per version into pytest's cache
folder (docs/testing.md), when the first test here runs. The mixins run inside one pytest test per preset, which fails
on any failing common test and on any skipped one whose reason `NOT_APPLICABLE` does not explain (the mixin skips some
itself: no GPU, no flash attention, ...).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tarfile
import tempfile
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import transformers

from modeling_dcclip import DCCLIPConfig, DCCLIPModel

# The folder `config.cache.mkdir(...)` gives under pytest's default cache_dir: the mixins are base classes, needed when
# this module is imported, before any fixture runs.
COMMON_TESTS_CACHE = (Path(__file__).resolve().parents[2] / ".pytest_cache" / "d" /
                      f"transformers-{transformers.__version__}-common-tests")
COMMON_TESTS_PACKAGE = "transformers_common_tests"
# The files of the source distribution's tests/ folder that this module runs.
COMMON_TEST_FILES = ("test_modeling_common.py", "test_configuration_common.py")
# Modules those files import from transformers' repository that the source distribution does not ship, each with its
# stand-in and why the stand-in changes no test that runs here.
STAND_INS = {
    # ModelTesterMixin's base class, adding torch.export tests; they are in the repository only, so they do not run.
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    # Read by an issubclass check only: a model that cannot generate must not inherit the real mixin, and ours cannot.
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    # Read by ConfigTester.check_config_arguments_init only, which returns before reading it for composite configs.
    "utils/test_configuration_utils.py": "config_common_kwargs = {}\n",
}


def _download_common_tests(package_dir: Path) -> None:
    """Fetch the source distribution of the installed transformers with pip; keep the test files and add stand-ins."""
    version = transformers.__version__
    with tempfile.TemporaryDirectory(dir=package_dir.parent) as work:
        try:
            result = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                 "--disable-pip-version-check", "--dest", work, f"transformers=={version}"],
                capture_output=True, text=True, timeout=900,
            )
            pip_said = result.stderr[-3000:] if result.returncode != 0 else None
        except subprocess.TimeoutExpired:
            pip_said = "(no answer within 900 s)"
        if pip_said is not None:
            raise RuntimeError(
                f"could not download the source distribution of transformers {version} from the package registry (is "
                f"it reachable?); it holds the common model tests this module runs. pip said:\n{pip_said}"
            )
        staging = Path(work) / COMMON_TESTS_PACKAGE
        staging.mkdir()
        with tarfile.open(next(Path(work).glob("transformers-*.tar.gz"))) as sdist:
            for member in sdist.getmembers():
                folder, _, name = member.name.rpartition("/")
                if folder.endswith("/tests") and name in COMMON_TEST_FILES:  # written under our own names only
                    (staging / name).write_bytes(sdist.extractfile(member).read())
        missing = [name for name in COMMON_TEST_FILES if not (staging / name).is_file()]
        if missing:
            raise RuntimeError(f"the source distribution of transformers {version} has no tests/{missing}")
        # Empty: ConfigTester's module runs its package's __init__.py under the name `transformers`.
        (staging / "__init__.py").write_text("")
        for relative, code in STAND_INS.items():
            path = staging / relative
            path.parent.mkdir(exist_ok=True)
            (path.parent / "__init__.py").write_text("")
            path.write_text(code)
        staging.rename(package_dir)  # complete or absent, never half-written


def import_transformers_common_tests() -> tuple[ModuleType, ModuleType]:
    """`(test_modeling_common, test_configuration_common)` of the installed transformers version; `RuntimeError` when
    pip cannot fetch them."""
    package_dir = COMMON_TESTS_CACHE / COMMON_TESTS_PACKAGE
    if not package_dir.is_dir():
        COMMON_TESTS_CACHE.mkdir(parents=True, exist_ok=True)
        _download_common_tests(package_dir)
    if str(COMMON_TESTS_CACHE) not in sys.path:
        sys.path.insert(0, str(COMMON_TESTS_CACHE))
    return (importlib.import_module(f"{COMMON_TESTS_PACKAGE}.test_modeling_common"),
            importlib.import_module(f"{COMMON_TESTS_PACKAGE}.test_configuration_common"))


# Why each common test that does not run on DCCLIPModel here is skipped, by the reason the skip gives (docs/testing.md).
# A skip whose reason is not in this table fails the test: a common test that stops applying must be explained here.
NOT_APPLICABLE = {
    # skipped by this module: they read what a dual-tower, CLIP-style model does not have
    "reads top-level hidden states; DCCLIPOutput keeps each tower's in text_model_output / vision_model_output, as "
    "CLIPOutput does, and test_get_*_features_hidden_states check them": "as transformers' CLIPModelTest",
    "reads top-level hidden states and attentions, which a CLIP-style output does not have (as CLIP)": "as CLIP",
    "two towers, so no single input embedding (as CLIP); each tower has its own": "as CLIP",
    "a ConvNeXt-V2 image tower has no attention layers, so get_image_features has no attentions": "tiny only",
    "test_resize_embeddings is set to `False`": "two towers, no single token embedding to resize (as CLIP)",
    # skipped by the mixin: hardware this machine lacks
    "test requires accelerator": "no GPU",
    "test requires multiple accelerators": "no GPU",
    "test requires CUDA": "no GPU",
    "test requires MPS": "not a Mac",
    "test requires Flash Attention": "no GPU",
    "test requires Flash Attention 3": "no GPU",
    "test requires Flash Attention 4": "no GPU",
    "test is slow": "marked slow by transformers (torch.compile for training)",
    # skipped by the mixin: features DCCLIPModel does not have
    "This model has no `base_model_class` defined in tester.": "no base/head split: the model is the base model",
    "No conversion found for <class 'modeling_dcclip.modeling_dcclip.DCCLIPModel'>": "no key renaming applies (tiny)",
    "This model has no sparse experts.": "not a mixture of experts",
    "This model has no `output_router_logits` in its config.": "not a mixture of experts",
    "This model doesn't use `inputs_embeds`": "two towers with different inputs, as CLIP",
    "Parts of this model don't support sdpa": "the ConvNeXt-V2 tower has no attention (tiny)",
    "DCCLIPModel does not support SDPA": "the class dispatches per tower; each tower's own SDPA support applies",
    "No sequence-to-sequence language modeling head to check": "no language-modeling head",
    "No decoder-only language modeling head to check": "no language-modeling head",
    "No model with a differentiable loss was available to verify enable_input_require_grads with gradient "
    "checkpointing.": "no single input embedding",
    "No `_keep_in_fp32_modules_strict` defined": "no fp32-only modules",
    "DCCLIPModel has no _keep_in_fp32_modules nor _keep_in_fp32_modules_strict attribute defined": "no fp32-only modules",
    "DCCLIPModel class has no _keep_in_fp32_modules or _keep_in_fp32_modules_strict attribute defined":
        "no fp32-only modules",
    "Model does not support sliding window mask": "no sliding-window attention",
    "Model does not support output_attentions": "output_attentions through SDPA (tiny-vit)",
    "Model does not have position embeddings": "no position embeddings to resize at the top level",
    "Model does not have a TP plan.": "no tensor-parallel plan",
    "Do not take a cache as input to forward": "no generation cache",
    "DCCLIPModel does not support grouped_mm": "not a mixture of experts",
}


@pytest.fixture(scope="session")
def transformers_common_tests() -> tuple[ModuleType, ModuleType]:
    """The common-test modules of the installed transformers, fetched once into pytest's cache folder."""
    return import_transformers_common_tests()


@dataclass
class TowerTester:
    """One tower as the common tests read it: its depth and the inputs of its feature getter."""

    num_hidden_layers: int  # layers (ViT, BERT, XLM-R) or stages (ConvNeXt-V2); hidden states are one more
    make_inputs: Callable[[], dict]

    def prepare_config_and_inputs_for_common(self) -> tuple[None, dict]:
        return None, self.make_inputs()


class DCCLIPModelTester:
    """Config and random inputs of one preset, laid out as the common tests expect of a CLIP model tester."""

    def __init__(self, parent: unittest.TestCase, preset: str, modeling_common: ModuleType, batch_size: int = 4,
                 seq_length: int = 7, vocab_size: int = 99):  # fmt: skip
        self.parent = parent
        self.preset = preset
        self.common = modeling_common
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.is_training = True
        config = self.get_config()
        self.image_size = config.image_size
        self.num_channels = config.vision_config.num_channels
        self.text_config = config.text_config.to_dict()  # test_num_layers_is_small reads both
        self.vision_config = config.vision_config.to_dict()
        self.text_model_tester = TowerTester(config.text_config.num_hidden_layers, self.text_inputs)
        self.vision_model_tester = TowerTester(config.vision_config.num_hidden_layers, self.image_inputs)

    def get_config(self) -> DCCLIPConfig:
        return DCCLIPConfig.from_preset(self.preset, vocab_size=self.vocab_size)

    def text_inputs(self) -> dict:
        shape = [self.batch_size, self.seq_length]
        return {"input_ids": self.common.ids_tensor(shape, self.vocab_size),
                "attention_mask": self.common.random_attention_mask(shape)}  # fmt: skip

    def image_inputs(self) -> dict:
        shape = [self.batch_size, self.num_channels, self.image_size, self.image_size]
        return {"pixel_values": self.common.floats_tensor(shape)}

    def prepare_config_and_inputs_for_common(self) -> tuple[DCCLIPConfig, dict]:
        return self.get_config(), {**self.text_inputs(), **self.image_inputs(), "return_loss": True}


def common_test_case(preset: str, modeling_common: ModuleType, configuration_common: ModuleType) -> type:
    """The `unittest.TestCase` that runs the mixin on `preset`, with the settings and skips of transformers'
    `CLIPModelTest` for a dual-tower model."""

    class DCCLIPCommonTests(modeling_common.ModelTesterMixin, unittest.TestCase):
        all_model_classes = (DCCLIPModel,)
        additional_model_inputs = ["pixel_values"]  # beside the main input, input_ids
        test_resize_embeddings = False  # two towers, no single token embedding to resize (as CLIP)
        test_attention_outputs = False  # attentions are in each tower's output, none at the top level (as CLIP)
        # The mixin dates a model by the copyright line of its config file, which ours lacks; the check applies to us.
        test_can_init_all_missing_weights_before_2023 = True
        _is_composite = True
        # A CNN's last_hidden_state is a (batch, channels, height, width) map, not (batch, tokens, hidden_size).
        skip_test_image_features_output_shape = preset == "tiny"

        def setUp(self):
            self.model_tester = DCCLIPModelTester(self, preset, modeling_common)
            self.config_tester = configuration_common.ConfigTester(
                self, config_class=DCCLIPConfig, has_text_modality=False,
                common_properties=["projection_dim", "logit_scale_init_value"],
            )  # fmt: skip

        def test_config(self):
            self.config_tester.run_common_tests()

        @unittest.skip("reads top-level hidden states; DCCLIPOutput keeps each tower's in text_model_output / "
                       "vision_model_output, as CLIPOutput does, and test_get_*_features_hidden_states check them")
        def test_hidden_states_output(self):
            pass

        @unittest.skip("reads top-level hidden states and attentions, which a CLIP-style output does not have (as CLIP)")
        def test_retain_grad_hidden_states_attentions(self):
            pass

        @unittest.skip("two towers, so no single input embedding (as CLIP); each tower has its own")
        def test_model_get_set_embeddings(self):
            pass

        if preset == "tiny":

            @unittest.skip("a ConvNeXt-V2 image tower has no attention layers, so get_image_features has no attentions")
            def test_get_image_features_attentions(self):
                pass

    DCCLIPCommonTests.__name__ = DCCLIPCommonTests.__qualname__ = f"DCCLIP_{preset.replace('-', '_')}_CommonTests"
    return DCCLIPCommonTests


@pytest.mark.parametrize("preset", ["tiny", "tiny-vit"])
def test_student_passes_transformers_common_model_tests(preset, transformers_common_tests):
    """Every common test passes, and every one that does not run is skipped for a reason NOT_APPLICABLE explains."""
    case = common_test_case(preset, *transformers_common_tests)
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
    problems = [f"{test.id()}\n{trace}" for test, trace in result.failures + result.errors]
    assert not problems, f"{len(problems)} common test(s) fail:\n\n" + "\n\n".join(problems)
    unexplained = sorted({f"{test.id()}: {reason}" for test, reason in result.skipped if reason not in NOT_APPLICABLE})
    assert not unexplained, "skipped for a reason NOT_APPLICABLE does not explain:\n" + "\n".join(unexplained)
    # a skipped subtest (a `_SubTest`, which carries its `test_case`) leaves the rest of its test running
    skipped_whole = {test.id() for test, _ in result.skipped if not hasattr(test, "test_case")}
    passed = result.testsRun - len(skipped_whole)
    assert passed >= 100, f"only {passed} of {result.testsRun} common tests ran"  # 101 (tiny), 103 (tiny-vit) on 5.25
