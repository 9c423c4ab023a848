"""Where class names and prompt templates come from: ELEVATER-format JSON files, Chinese-CLIP ``label_cn.txt`` files,
plain class-name files (ImageNet-1k style), and the project's built-in lists.

A :class:`PromptCatalog` stacks several sources. For each dataset and language it takes the class names from the first
source that has them and, separately, the templates from the first source that has them, so that for example the
Chinese templates of ``elevater_zh.json`` (whose class names are ``null``) combine with the project's Chinese names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dcclip.evaluation.builtin_prompts import BUILTIN_PROMPTS, DEFAULT_TEMPLATES, ELEVATER_DATASET_METRICS
from dcclip.evaluation.metrics import ELEVATER_METRICS
from dcclip.languages import LANGUAGES


@dataclass(frozen=True)
class ClassPrompts:
    """Class names (entry ``i`` names class id ``i``) and ``str.format`` templates with one ``{}`` each."""

    classnames: list[str]
    templates: list[str]

    def __post_init__(self) -> None:
        if not self.classnames:
            raise ValueError("ClassPrompts: the class-name list is empty")
        if not self.templates:
            raise ValueError("ClassPrompts: the template list is empty")
        bad = [t for t in self.templates if t.count("{}") != 1]
        if bad:
            raise ValueError(f"ClassPrompts: each template needs exactly one '{{}}' placeholder; these do not: {bad[:3]}")

    def prompts_for(self, classname: str) -> list[str]:
        """Every template filled with ``classname``."""
        return [template.replace("{}", classname) for template in self.templates]


@dataclass
class PromptSource:
    """Class names / templates / metric per dataset and language from one place (``None``: this source has none)."""

    name: str
    classnames: dict[tuple[str, str], list[str] | None] = field(default_factory=dict)
    templates: dict[tuple[str, str], list[str] | None] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)


class PromptCatalog:
    """Looks up class names and templates across sources in order of precedence (first source wins)."""

    def __init__(self, sources: list[PromptSource], fallback_templates: dict[str, list[str]] | None = None):
        self.sources = list(sources)
        self.fallback_templates = DEFAULT_TEMPLATES if fallback_templates is None else fallback_templates

    def prepended(self, source: PromptSource) -> PromptCatalog:
        """A catalog that consults ``source`` before the sources of this one."""
        return PromptCatalog([source, *self.sources], self.fallback_templates)

    def metric(self, dataset: str, default: str = "accuracy") -> str:
        """The evaluation metric the first source that names one gives ``dataset``; ``default`` when none does. The
        built-in source names one for each of ELEVATER's 20 datasets, so only tasks outside ELEVATER get ``default``."""
        for source in self.sources:
            if dataset in source.metrics:
                return source.metrics[dataset]
        return default

    def lookup(self, dataset: str, language: str, classnames: list[str] | None = None) -> ClassPrompts:
        """Class names and templates of ``dataset`` in ``language``.

        Args:
            dataset: dataset / task name.
            language: ``"en"`` or ``"zh"``.
            classnames: names to use when no source has any (e.g. an image folder's directory names).

        Raises:
            KeyError: no source has class names for the dataset and language, and none were passed.
        """
        found_names = self._first(dataset, language, "classnames")
        if found_names is None:
            found_names = classnames
        if found_names is None:
            searched = ", ".join(source.name for source in self.sources) or "no sources"
            raise KeyError(
                f"no {language!r} class names for dataset {dataset!r} (searched: {searched}); pass a prompt file "
                f"(ELEVATER JSON), a label_cn.txt or a class-name file for it"
            )
        templates = self._first(dataset, language, "templates") or self.fallback_templates.get(language)
        if not templates:
            raise KeyError(f"no {language!r} templates for dataset {dataset!r} and no default templates for {language!r}")
        return ClassPrompts(list(found_names), list(templates))

    def _first(self, dataset: str, language: str, kind: str) -> list[str] | None:
        for source in self.sources:
            value = getattr(source, kind).get((dataset, language))
            if value:
                return value
        return None


def builtin_source() -> PromptSource:
    """The project's own class names and templates, and the ELEVATER toolkit's metric of each of its 20 datasets
    (:mod:`evaluation.builtin_prompts`)."""
    source = PromptSource(name="builtin", metrics=dict(ELEVATER_DATASET_METRICS))
    for dataset, entry in BUILTIN_PROMPTS.items():
        for language in LANGUAGES:
            if language in entry:
                source.classnames[(dataset, language)] = entry[language]["classnames"]
                source.templates[(dataset, language)] = entry[language]["templates"]
    return source


def load_elevater_prompt_file(path: str | Path, language: str) -> PromptSource:
    """Read a JSON file in the format of ``elevater_en.json`` / ``elevater_zh.json``.

    The file maps dataset names to objects with ``classnames`` (list, or ``null`` when the file has none),
    ``templates`` (``str.format`` strings with ``{}``) and optionally ``metric``.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        data = json.load(handle)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object mapping dataset names to entries, got {type(data).__name__}")
    source = PromptSource(name=str(path))
    for dataset, entry in data.items():
        if not isinstance(entry, dict) or "templates" not in entry:
            raise ValueError(f"{path}: entry {dataset!r} needs at least a 'templates' list")
        source.classnames[(dataset, language)] = entry.get("classnames")
        source.templates[(dataset, language)] = entry["templates"]
        metric = entry.get("metric")
        if metric is not None:
            if metric not in ELEVATER_METRICS:
                raise ValueError(f"{path}: dataset {dataset!r} names unknown metric {metric!r}")
            source.metrics[dataset] = metric
    return source


def read_classnames_file(path: str | Path) -> list[str]:
    """Read a class-name list: ``.txt`` with one name per line (line ``i`` is class id ``i``, as in Chinese-CLIP's
    ``label_cn.txt``), or ``.json`` holding a list, or an object mapping class ids (``"0"``, ``"1"``, ...) to names.
    """
    path = Path(path)
    if path.suffix == ".json":
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data, dict):
            try:
                ids = sorted(int(key) for key in data)
            except ValueError as error:
                raise ValueError(f"{path}: the keys of a class-name object must be class ids") from error
            if ids != list(range(len(ids))):
                raise ValueError(f"{path}: class ids must run from 0 to {len(ids) - 1} without gaps")
            names = [data[str(i)] for i in ids]
        elif isinstance(data, list):
            names = data
        else:
            raise ValueError(f"{path}: expected a list of names or an object of id -> name")
    else:
        with path.open(encoding="utf-8") as handle:
            names = [line.strip() for line in handle if line.strip()]
    names = [name[0] if isinstance(name, list) else name for name in names]  # synonym lists: first name
    if not names or not all(isinstance(name, str) and name for name in names):
        raise ValueError(f"{path}: no class names, or an entry that is not a non-empty string")
    return names


def classnames_source(dataset: str, language: str, classnames: list[str], name: str) -> PromptSource:
    """A one-entry source holding class names for one dataset and language (e.g. from a ``label_cn.txt``)."""
    return PromptSource(name=name, classnames={(dataset, language): classnames})


def default_catalog(prompt_files: dict[str, list[str | Path]] | None = None) -> PromptCatalog:
    """Prompt files (per language, earlier files first) ahead of the built-in lists.

    Args:
        prompt_files: e.g. ``{"en": ["elevater_en.json"], "zh": ["elevater_zh.json"]}``.
    """
    sources = [
        load_elevater_prompt_file(path, language)
        for language, paths in (prompt_files or {}).items()
        for path in paths
    ]
    return PromptCatalog([*sources, builtin_source()])
