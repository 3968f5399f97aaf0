"""The lowbit CLI, end-to-end pipelines, sweeps configs and plots."""
