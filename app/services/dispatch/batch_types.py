"""Numeric types and constants shared by the batch planner and its solver."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

SCORE_SCALE: Final = 10_000
"""Scores are compared at a resolution of 1/SCORE_SCALE (4 decimals)."""
DEFAULT_MAX_BRANCH_NODES: Final = 16
"""Assignment relaxations per component before handing the component to the MILP solver."""
DEFAULT_MILP_TIME_LIMIT: Final = 10.0
"""Seconds HiGHS may spend on one component before settling for the best plan found."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
