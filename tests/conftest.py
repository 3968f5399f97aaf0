"""Shared test set-up.  This directory is on ``sys.path`` (pytest's rootdir conftest), so test modules import
the helpers of ``cli_run.py`` directly."""
