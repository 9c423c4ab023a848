"""`dcclip demo`: the whole DC-CLIP method end to end, offline, on the built-in bilingual benchmark (see docs/demo.md)."""
