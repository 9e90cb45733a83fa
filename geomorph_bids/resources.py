"""The one place that knows where bundled resources live (templates, example data).

Everything is found inside the installed package (``geomorph_bids/data``) through
importlib.resources: no absolute paths, no environment lookups, no downloads.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["data_dir", "template_feature_file", "template_rotation_file", "example_dir"]


def data_dir() -> Path:
    """Folder of the package's bundled data (read-only)."""
    return Path(str(files("geomorph_bids") / "data"))


def template_feature_file(template: str, hemi: str, feature: str, density: str = "ico6") -> Path:
    """Bundled template feature map, e.g. ``tpl-fsLR_hemi-L_den-ico6_sulc.shape.gii``.

    The file may not exist; callers check and report which templates are available.
    """
    return data_dir() / "templates" / f"tpl-{template}_hemi-{hemi}_den-{density}_{feature}.shape.gii"


def template_rotation_file(template: str) -> Path:
    """JSON ``{"L": 3x3, "R": 3x3}``: rotation from fsaverage (FreeSurfer ``sphere.reg``) space
    into ``template`` space. Absent for fsaverage itself (the identity)."""
    return data_dir() / "templates" / f"tpl-{template}_from-fsaverage_rotation.json"


def example_dir() -> Path:
    """Bundled example dataset (one synthetic subject in FreeSurfer layout)."""
    return data_dir() / "example"
