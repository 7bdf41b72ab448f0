"""Learned intrinsic rewards from LLM feedback: ONI (Zheng et al. 2024) and Motif-style ranking.

The reward kind ``"oni"`` (``reward="sparse + 0.1*oni"``, options in
``reward_kwargs={"oni": {...}}``) is registered by ``import rewardgym``. See ``docs/ONI.md``. Modules: :mod:`.store` (SQLite labels), :mod:`.annotators` (LLM and
offline embedding back-ends), :mod:`.service` (asynchronous annotation), :mod:`.models`
(retrieval / classification / ranking), :mod:`.oni` (the reward source, wrapper, options).
"""

import logging

from rewardgym.intrinsic.annotators import (AnnotationParseError, EmbeddingAnnotator, LLMAnnotator,
                                            parse_reply)
from rewardgym.intrinsic.models import (MODELS, ClassificationModel, RankingModel, RetrievalModel,
                                        make_model)
from rewardgym.intrinsic.oni import (OniOptions, OniReward, OniSystem, OniWrapper, acquire_system,
                                     release_system)
from rewardgym.intrinsic.service import AnnotationService
from rewardgym.intrinsic.store import Label, LabelStore, Preference, caption_key, normalize_caption
from rewardgym.text import ESCAPE_CONTROL_FILTER

# the package's logger quotes LLM errors and store paths: its messages reach stderr escaped
logging.getLogger("rewardgym.intrinsic").addFilter(ESCAPE_CONTROL_FILTER)

__all__ = [
    "MODELS", "AnnotationParseError", "AnnotationService", "ClassificationModel", "EmbeddingAnnotator", "Label",
    "LabelStore", "LLMAnnotator", "OniOptions", "OniReward", "OniSystem", "OniWrapper", "Preference",
    "RankingModel", "RetrievalModel", "acquire_system", "caption_key", "make_model", "normalize_caption",
    "parse_reply", "release_system",
]
