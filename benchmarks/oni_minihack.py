"""ONI on sparse MiniHack tasks: extrinsic-only (sparse success reward) vs sparse + ONI.

Each reward model (retrieval, classification, ranking) with the offline embedding annotator
(or ``--annotator llm`` with an endpoint configured), same env steps, 3 seeds; reports the
training success rate over the last 100 episodes and writes docs/img/oni_minihack.png.

    python benchmarks/oni_minihack.py --tasks rewardgym/MiniHack-KeyRoom-S5-v0        # 30k steps, 4 x 3 runs
    python benchmarks/oni_minihack.py --tasks rewardgym/MiniHack-MultiRoom-N2-v0 --steps 20000 \
        --variants none classification
    python benchmarks/oni_minihack.py --tasks rewardgym/MiniHack-River-v0 --steps 50000 \
        --variants none retrieval classification
    python benchmarks/oni_minihack.py ... --oni-option count_exponent=0.5   # any OniOptions field

Budget: 30k env steps per run by default (about 80 s each on 2 quiet CPU cores).
Finished runs (``bench_result.json`` with the same steps, annotator and options) are read
back, not retrained; "extrinsic only" runs are shared by every option setting.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oni_common import main  # noqa: E402

if __name__ == "__main__":
    main(__doc__, "minihack", ["rewardgym/MiniHack-KeyRoom-S5-v0", "rewardgym/MiniHack-MultiRoom-N2-v0"],
         extrinsic="sparse", steps=30_000, key="success_rate", label="success rate")
