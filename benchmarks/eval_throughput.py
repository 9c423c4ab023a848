"""Zero-shot evaluation throughput (images/s): text classifier cached vs rebuilt for every image batch.

"cached" is what ``ZeroShotClassifier`` does: the class embeddings (classes x templates prompts through the text tower)
are computed once (``classifier_build_s``, reported apart), then each batch costs only its image embeddings and a
matrix product. "rebuilt" recomputes them for every batch, as a loop that creates the classifier inside would. Both
include image preprocessing by the processor.

The student is built from a ``DCCLIPConfig`` preset with random weights (speed does not depend on the weights); its
text tokenizer is ``--tokenizer`` or, by default, a small SentencePiece model trained on the prompts; the output gives
its ``tokens_per_prompt``, which sets the text cost. With the default, the ``edge`` preset has a smaller embedding table
than with AltCLIP's 250k-token tokenizer (the lookup cost is the same).

    python benchmarks/eval_throughput.py --preset edge --dataset cifar-10 --language en --n-images 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer

from dcclip.evaluation.embeddings import embed_images
from dcclip.evaluation.prompts import default_catalog
from dcclip.evaluation.zero_shot import ZeroShotClassifier
from modeling_dcclip import DCCLIPConfig, DCCLIPModel, DCCLIPProcessor, make_image_processor
from dcclip.trainers.data.tokenizer import build_bilingual_tokenizer


def random_images(count: int, size: int = 256) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]


def build_seconds(model, processor, prompts) -> float:
    """Seconds to build the text classifier: every prompt through the text tower, averaged per class."""
    start = time.perf_counter()
    ZeroShotClassifier(model, processor, prompts).class_embeddings
    return time.perf_counter() - start


def images_per_second(model, processor, prompts, images: list[Image.Image], batch_size: int, rebuild: bool) -> float:
    """Images per second over ``images`` in batches of ``batch_size``.

    ``rebuild=False``: the classifier is built before the clock starts (its one-time cost is ``build_seconds``).
    ``rebuild=True``: a new classifier is built for every batch, inside the timing.
    """
    classifier = ZeroShotClassifier(model, processor, prompts)
    if not rebuild:
        classifier.class_embeddings
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        if rebuild:
            classifier = ZeroShotClassifier(model, processor, prompts)
        classifier.probabilities(embed_images(model, processor, images[first : first + batch_size]))
    return len(images) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="edge", choices=DCCLIPConfig.preset_names())
    parser.add_argument("--dataset", default="cifar-10", help="dataset whose class names and templates are used")
    parser.add_argument("--prompts", type=Path, help="ELEVATER-format JSON with the dataset's prompts (else built-in)")
    parser.add_argument("--language", default="en", choices=["en", "zh"])
    parser.add_argument("--tokenizer", help="a saved tokenizer (e.g. AltCLIP's XLM-R); default: trained on the prompts")
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="alternating cached/rebuilt runs; the median is reported")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    catalog = default_catalog({args.language: [args.prompts]} if args.prompts else None)
    prompts = catalog.lookup(args.dataset, args.language)
    texts = [prompt for name in prompts.classnames for prompt in prompts.prompts_for(name)]
    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        # A small vocabulary keeps pieces near word / character size; a large one trained on the prompts alone would
        # learn whole prompts as single tokens and make the text tower look far cheaper than with a real tokenizer.
        tokenizer = build_bilingual_tokenizer(texts, vocab_size=400)
    tokens_per_prompt = float(np.mean([len(ids) for ids in tokenizer(texts)["input_ids"]]))
    config = DCCLIPConfig.from_preset(args.preset, vocab_size=len(tokenizer))
    model = DCCLIPModel(config).eval()
    processor = DCCLIPProcessor(image_processor=make_image_processor(config.image_size), tokenizer=tokenizer)
    images = random_images(args.n_images)

    images_per_second(model, processor, prompts, images[: args.batch_size], args.batch_size, rebuild=False)  # warm-up
    # Alternating the modes spreads any change in machine load over all of them.
    builds, cached_runs, rebuilt_runs = [], [], []
    for _ in range(args.repeats):
        builds.append(build_seconds(model, processor, prompts))
        cached_runs.append(images_per_second(model, processor, prompts, images, args.batch_size, rebuild=False))
        rebuilt_runs.append(images_per_second(model, processor, prompts, images, args.batch_size, rebuild=True))
    cached, rebuilt = float(np.median(cached_runs)), float(np.median(rebuilt_runs))
    result = {
        "preset": args.preset,
        "parameters": model.num_parameters(),
        "dataset": args.dataset,
        "language": args.language,
        "classes": len(prompts.classnames),
        "templates": len(prompts.templates),
        "prompts": len(texts),
        "tokens_per_prompt": round(tokens_per_prompt, 1),
        "n_images": args.n_images,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch_threads": args.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "classifier_build_s": round(float(np.median(builds)), 2),
        "images_per_s_cached": round(cached, 2),
        "images_per_s_rebuilt": round(rebuilt, 2),
        "speedup": round(cached / rebuilt, 2),
    }
    print(json.dumps(result, indent=2))
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
