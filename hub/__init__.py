"""Publishing a trained DC-CLIP student: folder check, model card from measured results, upload to the Hub."""
