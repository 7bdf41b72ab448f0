"""ONI on NetHackScore: extrinsic-only (NLE's score reward, ``env``) vs env + ONI.

Each reward model with the offline embedding annotator (``--annotator llm`` with an
endpoint configured), same env steps, 3 seeds; reports the mean episode env return (in-game
score gained per episode, last 100 episodes of training) and writes docs/img/oni_nethack.png.

    python benchmarks/oni_nethack.py                 # 20k env steps per run, 4 x 3 runs
    python benchmarks/oni_nethack.py --steps 200000 --variants none classification
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from oni_common import main  # noqa: E402

if __name__ == "__main__":
    main(__doc__, "nethack", ["rewardgym/NetHack-Score-v0"], extrinsic="env", steps=20_000, key="env_return",
         label="score (env return)")
