"""DCCLIPModel passes transformers' own common model tests (`ModelTesterMixin`, `ConfigTester`), set up as transformers'
`CLIPModelTest` sets them up, for the `tiny` (ConvNeXt-V2 + XLM-R) and `tiny-vit` (ViT + BERT) students.

The mixins are not in the transformers wheel: they are in the `tests/` folder of the source distribution of the
installed transformers version, which pip downloads from the package registry once per version into pytest's cache
folder (docs/testing.md). Each common test that does not apply to a dual-tower student is skipped below, with its
reason; the mixin skips others itself (no GPU, no flash attention, ...), and `pytest -rs` lists them all.
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


try:
    modeling_common, configuration_common = import_transformers_common_tests()
    FETCH_ERROR = None
except RuntimeError as error:  # one test below fails with pip's message; the rest of the suite still runs
    modeling_common = configuration_common = None
    FETCH_ERROR = str(error)

not_fetched = unittest.skipIf(FETCH_ERROR is not None, "transformers' common tests could not be fetched: see "
                                                       "test_transformers_common_tests_are_fetched")


def test_transformers_common_tests_are_fetched():
    assert FETCH_ERROR is None, FETCH_ERROR


@dataclass
class TowerTester:
    """One tower as the common tests read it: its depth and the inputs of its feature getter."""

    num_hidden_layers: int  # layers (ViT, BERT, XLM-R) or stages (ConvNeXt-V2); hidden states are one more
    make_inputs: Callable[[], dict]

    def prepare_config_and_inputs_for_common(self) -> tuple[None, dict]:
        return None, self.make_inputs()


class DCCLIPModelTester:
    """Config and random inputs of one preset, laid out as the common tests expect of a CLIP model tester."""

    def __init__(self, parent: unittest.TestCase, preset: str, batch_size: int = 4, seq_length: int = 7,
                 vocab_size: int = 99):
        self.parent = parent
        self.preset = preset
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
        return {"input_ids": modeling_common.ids_tensor(shape, self.vocab_size),
                "attention_mask": modeling_common.random_attention_mask(shape)}

    def image_inputs(self) -> dict:
        shape = [self.batch_size, self.num_channels, self.image_size, self.image_size]
        return {"pixel_values": modeling_common.floats_tensor(shape)}

    def prepare_config_and_inputs_for_common(self) -> tuple[DCCLIPConfig, dict]:
        return self.get_config(), {**self.text_inputs(), **self.image_inputs(), "return_loss": True}


class DCCLIPCommonTests(getattr(modeling_common, "ModelTesterMixin", object)):
    """The mixin's settings and skips for a dual-tower student, as transformers' `CLIPModelTest` has them."""

    preset: str
    all_model_classes = (DCCLIPModel,)
    additional_model_inputs = ["pixel_values"]  # beside the main input, input_ids
    test_resize_embeddings = False  # two towers, no single token embedding to resize (as CLIP)
    test_attention_outputs = False  # attentions are in each tower's output, none at the top level (as CLIP)
    # The mixin dates a model by the copyright line of its config file, which ours lacks; the check applies to us.
    test_can_init_all_missing_weights_before_2023 = True
    _is_composite = True

    def setUp(self):
        self.model_tester = DCCLIPModelTester(self, self.preset)
        self.config_tester = configuration_common.ConfigTester(
            self, config_class=DCCLIPConfig, has_text_modality=False,
            common_properties=["projection_dim", "logit_scale_init_value"],
        )

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


@not_fetched
class TestTinyStudentPassesTransformersCommonTests(DCCLIPCommonTests, unittest.TestCase):
    """ConvNeXt-V2 image tower + XLM-R text tower."""

    preset = "tiny"
    # A CNN's last_hidden_state is a (batch, channels, height, width) map, not (batch, tokens, hidden_size).
    skip_test_image_features_output_shape = True

    @unittest.skip("a ConvNeXt-V2 image tower has no attention layers, so get_image_features has no attentions")
    def test_get_image_features_attentions(self):
        pass


@not_fetched
class TestTinyVitStudentPassesTransformersCommonTests(DCCLIPCommonTests, unittest.TestCase):
    """ViT image tower + BERT text tower."""

    preset = "tiny-vit"
