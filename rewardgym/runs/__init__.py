"""rewardgym.runs: run directories and what is done with them.

:mod:`~rewardgym.runs.directory` (the run-directory format, checkpoints as data, reward
copies), :mod:`~rewardgym.runs.train` (train and resume, the training spec, tracking),
:mod:`~rewardgym.runs.evaluate` (the evaluator of runs and of any batch policy),
:mod:`~rewardgym.runs.export` (ONNX/TorchScript export and loading received policies),
:mod:`~rewardgym.runs.sb3` (the Stable-Baselines3 adapter) and
:mod:`~rewardgym.runs.potential` (a run's value function as a shaping potential).
Algorithms are dispatched through :data:`rewardgym.runs.train.ALGORITHMS`.
"""
