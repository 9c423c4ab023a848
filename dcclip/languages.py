"""The languages DC-CLIP trains and evaluates in: caption columns, prompt sets and report columns all follow this
order."""

LANGUAGES: tuple[str, ...] = ("en", "zh")
