"""Tasks, state views and simulator families."""
