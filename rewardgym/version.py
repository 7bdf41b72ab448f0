"""rewardgym's version (one place; ``rewardgym.__version__`` re-exports it)."""

__version__ = "0.1.0"
