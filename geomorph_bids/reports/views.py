"""Camera views of the report figures, shared by the sphere views (:mod:`.figures`) and the
mesh rasteriser (:mod:`.render`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["View", "views_for"]


@dataclass(frozen=True)
class View:
    """A camera direction (from the sphere's centre towards the viewer) and the image's up."""

    name: str
    toward: tuple[float, float, float]
    up: tuple[float, float, float]

    def frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, up, toward): orthonormal camera axes, (3,) float64 each."""
        t = np.asarray(self.toward, dtype=np.float64)
        t = t / np.linalg.norm(t)
        up = np.asarray(self.up, dtype=np.float64)
        up = up - t * (up @ t)
        up = up / np.linalg.norm(up)
        return np.cross(up, t), up, t


def views_for(hemi: str) -> list[View]:
    """Lateral, medial, dorsal and ventral views of a hemisphere in template space
    (x: left -> right, y: posterior -> anterior, z: inferior -> superior)."""
    side = -1.0 if hemi == "L" else 1.0
    return [View("lateral", (side, 0.0, 0.0), (0.0, 0.0, 1.0)),
            View("medial", (-side, 0.0, 0.0), (0.0, 0.0, 1.0)),
            View("dorsal", (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
            View("ventral", (0.0, 0.0, -1.0), (0.0, 1.0, 0.0))]
