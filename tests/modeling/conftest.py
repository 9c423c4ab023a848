"""Marks that transformers' common model tests (run by test_dcclip_transformers_common.py) put on their tests:
registered, so that pytest does not warn when their module is imported."""

TRANSFORMERS_TEST_MARKS = ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "slow",
                           "torch_compile_test")


def pytest_configure(config):
    for mark in TRANSFORMERS_TEST_MARKS:
        config.addinivalue_line("markers", f"{mark}: set by transformers' common model tests")
