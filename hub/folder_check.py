"""Completeness check of a trained DC-CLIP folder before it goes to the Hub.

A Hub user loads the folder with `AutoModel` / `AutoProcessor` / `pipeline(..., trust_remote_code=True)` on a machine
without this project, so everything those calls read must travel with it: the config and its `auto_map`, the remote-code
files that `auto_map` names, safetensors weights, the processor and tokenizer files, and the model card. Every missing
or inconsistent piece is collected and reported together, each naming the file at fault.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects
from safetensors import safe_open


# Training by-products the Trainer leaves in its output folder; they never go to the Hub. `training_args.bin` and the
# checkpoints are pickles (optimizer state, TrainingArguments), `runs/` holds TensorBoard logs.
TRAINING_BY_PRODUCTS = ["training_args.bin", "checkpoint-*/", "runs/"]

# Suffixes of files that are (or usually are) Python pickles: loading one can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")

# `auto_map` entries a Hub user needs: config, model, and the model class `pipeline("zero-shot-image-classification")`
# resolves; the processor's entry lives in processor_config.json.
REQUIRED_MODEL_AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForZeroShotImageClassification")

# Prefixes of the saved state dict, grouped as the results schema counts towers: each tower with its projection.
TOWER_PREFIXES = {"image": ("vision_model.", "visual_projection."), "text": ("text_model.", "text_projection.")}

_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2,
                "F8_E4M3": 1, "F8_E5M2": 1, "I8": 1, "U8": 1, "BOOL": 1}


class FolderCheckError(ValueError):
    """The folder cannot be published as it is; `problems` lists every reason, each naming a file."""

    def __init__(self, folder: Path, problems: list[str]):
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{folder} is not ready for the Hub ({len(problems)} problem(s)):\n{lines}")


@dataclass
class TowerSize:
    """Size of one tower (with its projection)."""

    parameters: int  # as the model defines them (stored buffers such as BatchNorm statistics are not parameters)
    bytes: int  # its share of the safetensors weights, buffers included


@dataclass
class FolderReport:
    """What the check found: the exact files that would be uploaded and the measured tower sizes."""

    folder: Path
    upload_files: list[str]  # paths relative to the folder, as `upload_folder` sends them
    excluded_files: list[str]  # training by-products left behind
    towers: dict[str, TowerSize]  # "image", "text" and "other" (e.g. logit_scale)
    config: dict
    tokenizer_vocab_size: int | None

    def file_size(self, name: str) -> int:
        """Size in bytes of one uploaded file."""
        return (self.folder / name).stat().st_size


def list_upload_files(folder: str | Path) -> tuple[list[str], list[str]]:
    """Split the folder's files into (uploaded, excluded) exactly as `HfApi.upload_folder` with
    `ignore_patterns=TRAINING_BY_PRODUCTS` does, so a dry run lists what a real push sends."""
    folder = Path(folder)
    every_file = [path.relative_to(folder).as_posix() for path in sorted(folder.glob("**/*")) if path.is_file()]
    uploaded = list(filter_repo_objects(every_file, ignore_patterns=[*TRAINING_BY_PRODUCTS, *DEFAULT_IGNORE_PATTERNS]))
    kept = set(uploaded)
    return uploaded, [name for name in every_file if name not in kept]


def check_model_folder(folder: str | Path, require_card: bool = True) -> FolderReport:
    """Check that `folder` holds a complete, consistent DC-CLIP model for the Hub; raise `FolderCheckError` otherwise.

    Args:
        folder: a folder written by `DCCLIPModel.save_pretrained` + `DCCLIPProcessor.save_pretrained`.
        require_card: also require the model card (`README.md`); `dcclip push` checks once before writing the card.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderCheckError(folder, [f"{folder} is not a folder"])
    upload, excluded = list_upload_files(folder)
    files = set(upload)
    problems: list[str] = []

    problems += [
        f"{name}: a pickled file would be uploaded; DC-CLIP ships safetensors only (remove it, or re-save the model "
        f"with save_pretrained)"
        for name in upload
        if name.endswith(PICKLE_SUFFIXES)
    ]
    config = _read_json(folder, "config.json", files, problems)
    if config is not None:
        # imported here: the shipped model's package pulls in torch, which `dcclip push --help` must not load
        from modeling_dcclip.configuration_dcclip import MINIMUM_TRANSFORMERS_VERSION_KEY

        _check_auto_map(folder, "config.json", config, REQUIRED_MODEL_AUTO_CLASSES, files, problems)
        if MINIMUM_TRANSFORMERS_VERSION_KEY not in config:
            problems.append(f"config.json has no {MINIMUM_TRANSFORMERS_VERSION_KEY!r}: it was saved by an older DC-CLIP, "
                            f"whose remote code needs transformers 5 and does not say so; re-save the model with "
                            f"DCCLIPModel.from_pretrained(folder).save_pretrained(folder)")
    processor_config = _read_json(folder, "processor_config.json", files, problems)
    if processor_config is not None:
        _check_auto_map(folder, "processor_config.json", processor_config, ("AutoProcessor",), files, problems)
        if "image_processor" not in processor_config and "preprocessor_config.json" not in files:
            problems.append("processor_config.json has no 'image_processor' entry and preprocessor_config.json is "
                            "missing: the image preprocessing is not saved")
    _check_remote_code_imports(folder, files, problems)
    tensors = _read_weight_shapes(folder, files, problems)
    _check_finite_weights(folder, files, problems)
    parameters = _check_weights_match_model(folder, tensors, problems) if config is not None and tensors else {}
    towers = _tower_sizes(tensors, parameters)
    vocab_size = _check_tokenizer(folder, files, config, problems)
    if require_card and "README.md" not in files:
        problems.append("README.md (the model card) is missing")
    if problems:
        raise FolderCheckError(folder, problems)
    return FolderReport(folder, upload, excluded, towers, config or {}, vocab_size)


def _read_json(folder: Path, name: str, files: set[str], problems: list[str]) -> dict | None:
    if name not in files:
        problems.append(f"{name} is missing")
        return None
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        problems.append(f"{name} is not valid JSON: {error}")
        return None


def _check_auto_map(folder: Path, source: str, config: dict, required: tuple[str, ...], files: set[str],
                    problems: list[str]) -> None:
    """Each required `auto_map` entry must exist and point at a shipped file that defines the named class."""
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        problems.append(f"{source} has no 'auto_map': AutoModel/AutoProcessor cannot find the remote code")
        return
    for auto_class in required:
        if auto_class not in auto_map:
            problems.append(f"{source} auto_map lacks {auto_class!r}")
    for auto_class, reference in auto_map.items():
        # A tokenizer entry may be a [slow, fast] pair; only "module.Class" strings point at remote code.
        for target in reference if isinstance(reference, list) else [reference]:
            if not isinstance(target, str) or "--" in target:
                continue  # None, or code that lives in another Hub repo
            module, _, class_name = target.rpartition(".")
            code_file = f"{module.replace('.', '/')}.py"
            if code_file not in files:
                problems.append(f"{source} auto_map[{auto_class!r}] = {target!r}, but {code_file} is missing")
            elif not re.search(rf"^class\s+{re.escape(class_name)}\b", _read_text(folder / code_file), re.MULTILINE):
                problems.append(f"{source} auto_map[{auto_class!r}] = {target!r}, but {code_file} defines no "
                                f"class {class_name}")


def _check_remote_code_imports(folder: Path, files: set[str], problems: list[str]) -> None:
    """Relative imports between the remote-code files must resolve to shipped files (transformers copies only those)."""
    for name in sorted(f for f in files if f.endswith(".py") and "/" not in f):
        for module in re.findall(r"^\s*from\s+\.([\w.]+)\s+import", _read_text(folder / name), re.MULTILINE):
            if f"{module.replace('.', '/')}.py" not in files:
                problems.append(f"{name} imports .{module}, but {module.replace('.', '/')}.py is missing")


def _read_weight_shapes(folder: Path, files: set[str], problems: list[str]) -> dict[str, tuple[list[int], str]]:
    """Tensor name -> (shape, dtype) from the safetensors headers, without loading any tensor."""
    if "model.safetensors.index.json" in files:
        index = _read_json(folder, "model.safetensors.index.json", files, problems) or {}
        shards = sorted(set(index.get("weight_map", {}).values()))
        if not shards:
            problems.append("model.safetensors.index.json has an empty weight_map")
    elif "model.safetensors" in files:
        shards = ["model.safetensors"]
    else:
        problems.append("model.safetensors (or model.safetensors.index.json) is missing: no safetensors weights")
        return {}
    tensors: dict[str, tuple[list[int], str]] = {}
    for shard in shards:
        if shard not in files:
            problems.append(f"weight shard {shard} (listed in model.safetensors.index.json) is missing")
            continue
        try:
            with safe_open(folder / shard, framework="pt") as weights:
                for key in weights.keys():
                    tensor = weights.get_slice(key)
                    tensors[key] = (list(tensor.get_shape()), tensor.get_dtype())
        except Exception as error:  # safetensors raises its own error types for a corrupt header
            problems.append(f"{shard} is not a readable safetensors file: {error}")
    return tensors


def non_finite_tensors(path: str | Path) -> dict[str, int]:
    """Tensor name -> count of NaN or infinite values, for each floating-point tensor of a safetensors file that holds
    any (read one tensor at a time, so a file larger than memory can be checked)."""
    import torch  # here, not at the top: `dcclip push --help` must not import torch

    from dcclip.trainers.callbacks.finite_training import all_finite

    counts: dict[str, int] = {}
    with safe_open(path, framework="pt") as weights:
        for key in weights.keys():
            tensor = weights.get_tensor(key)
            if not all_finite(tensor):
                counts[key] = int((~torch.isfinite(tensor)).sum())
    return counts


def _check_finite_weights(folder: Path, files: set[str], problems: list[str]) -> None:
    """Every uploaded safetensors file must hold finite values only: NaN or infinite weights load without a warning
    and turn every output of the model into NaN."""
    for name in sorted(f for f in files if f.endswith(".safetensors")):
        try:
            bad = non_finite_tensors(folder / name)
        except Exception as error:  # safetensors raises its own error types for a corrupt file
            unreadable = f"{name} is not a readable safetensors file: {error}"
            if unreadable not in problems:  # the shape check may have reported it already
                problems.append(unreadable)
            continue
        if bad:
            listed = ", ".join(f"{key} ({count} values)" for key, count in list(bad.items())[:5])
            problems.append(f"{name}: {len(bad)} tensor(s) hold NaN or infinite values: {listed}"
                            f"{' ...' if len(bad) > 5 else ''}; a model with non-finite weights outputs NaN")


def _tower_of(name: str) -> str:
    return next((tower for tower, prefixes in TOWER_PREFIXES.items() if name.startswith(prefixes)), "other")


def _check_weights_match_model(folder: Path, tensors: dict[str, tuple[list[int], str]],
                               problems: list[str]) -> dict[str, int]:
    """Build the model the config describes on the meta device (no memory, no weights) and compare its state dict
    with the stored tensors, named as loading names them: a missing tensor would be randomly initialised on load, an
    extra one silently dropped. Returns the parameter count of each tower as the model defines it (stored buffers
    such as BatchNorm statistics are not parameters)."""
    import torch

    from modeling_dcclip import DCCLIPConfig, DCCLIPModel

    try:
        config = DCCLIPConfig.from_pretrained(folder)
        with torch.device("meta"):
            model = DCCLIPModel(config)
    except Exception as error:  # reported with its cause, alongside the other problems
        problems.append(f"config.json does not build a DCCLIPModel: {error}")
        return {}
    expected = {name: list(value.shape) for name, value in model.state_dict().items()}
    stored_names, converted = _names_after_loading(model, tensors)
    loaded = set(stored_names)
    extra = sorted(stored_names[name] for name in loaded - set(expected))  # named as the file stores them
    for label, names in (("missing from the weights", sorted(set(expected) - loaded)),
                         ("in the weights but not in the model config.json describes", extra)):
        if names:
            problems.append(f"{len(names)} tensor(s) {label}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}")
    for name in sorted(set(expected) & loaded - converted):
        shape = tensors[stored_names[name]][0]
        if expected[name] != shape:
            problems.append(f"tensor {name} has shape {shape} in the weights but {expected[name]} in the "
                            f"model config.json describes")
    counts = {tower: 0 for tower in (*TOWER_PREFIXES, "other")}
    for name, parameter in model.named_parameters():
        counts[_tower_of(name)] += parameter.numel()
    return counts


def _names_after_loading(model, tensors: dict[str, tuple[list[int], str]]) -> tuple[dict[str, str], set[str]]:
    """Map each stored tensor to the name `from_pretrained` gives it, with the key renaming transformers applies on
    load (transformers 5 saves some towers in their original layout, e.g. ViT's `encoder.layer.0.attention.attention.
    query`, and loads them as `layers.0.attention.q_proj`). Returns {name after loading: stored name} and the names a
    weight converter produces, whose tensors loading reshapes (merged or split), so their stored shapes differ."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    transforms = get_model_conversion_mapping(model)
    renamings = [transform for transform in transforms if isinstance(transform, WeightRenaming)]
    converters = [transform for transform in transforms if isinstance(transform, WeightConverter)]
    model_names = model.state_dict()
    stored_names, converted = {}, set()
    for stored in tensors:
        name, converter = rename_source_key(stored, renamings, converters, model.base_model_prefix, model_names)
        stored_names[name] = stored
        if converter is not None:
            converted.add(name)
    return stored_names, converted


def _tower_sizes(tensors: dict[str, tuple[list[int], str]], parameters: dict[str, int]) -> dict[str, TowerSize]:
    sizes = {tower: TowerSize(parameters.get(tower, 0), 0) for tower in (*TOWER_PREFIXES, "other")}
    for name, (shape, dtype) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        sizes[_tower_of(name)].bytes += count * _DTYPE_BYTES.get(dtype, 4)
    return sizes


def _check_tokenizer(folder: Path, files: set[str], config: dict | None, problems: list[str]) -> int | None:
    """The tokenizer must load and its vocabulary size must equal the text tower's (config.json text_config)."""
    if "tokenizer_config.json" not in files:
        problems.append("tokenizer_config.json is missing")
        return None
    if "tokenizer.json" not in files and not any(name.endswith(".model") for name in files):
        problems.append("no tokenizer vocabulary: tokenizer.json (or a SentencePiece .model file) is missing")
        return None
    # Load through the class tokenizer_config.json names: AutoTokenizer would read config.json and ask to run the
    # remote code of the model.
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    tokenizer_config = _read_json(folder, "tokenizer_config.json", files, problems) or {}
    class_name = tokenizer_config.get("tokenizer_class")
    tokenizer_class = tokenizer_class_from_name(class_name) if isinstance(class_name, str) else None
    if tokenizer_class is None:
        problems.append(f"tokenizer_config.json names tokenizer_class {class_name!r}, which transformers does not know")
        return None
    try:
        vocab_size = len(tokenizer_class.from_pretrained(folder))
    except Exception as error:  # any loading failure is reported with its cause, alongside the other problems
        problems.append(f"the tokenizer files do not load as {class_name}: {error}")
        return None
    config_vocab = ((config or {}).get("text_config") or {}).get("vocab_size")
    if config_vocab is not None and config_vocab != vocab_size:
        problems.append(f"tokenizer has {vocab_size} tokens but config.json text_config.vocab_size is {config_vocab}")
    return vocab_size


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")
