"""vcast inside other frameworks, one submodule each (e.g. :mod:`vcast.integrations.vllm`).

Importing this package imports nothing heavy: each integration loads its framework only when used.
"""
