"""Shared test settings for this folder: tests run single-threaded (see mmsent_testkit.one_torch_thread)."""

from mmsent_testkit import one_torch_thread  # noqa: F401 -- an autouse fixture, active for this folder
