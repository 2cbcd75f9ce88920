"""The generation engine: the only package in the project that imports torch or diffusers.

Import it lazily (inside the worker's task), never at module level of code the web process
loads. ``tests/test_web_never_imports_torch.py`` keeps that promise.
"""
