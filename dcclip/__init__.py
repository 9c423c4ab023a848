"""The `dcclip` command line."""
