"""BIDS URIs of the files and folders a run reads, as the sidecars and the resume record name them (no
user's or installation's folder where a name does without one). Plain functions of paths: the run's settings
(:mod:`.config`) and its outputs (:mod:`.outputs`) both use them."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

__all__ = ["relative_inside", "input_uri", "folder_name"]


def relative_inside(path: str | Path, root: str | Path) -> str | None:
    """``path`` relative to ``root`` as the dataset names it, or None when it lies outside: by the
    names themselves when ``path`` lies below ``root`` as given (a link inside the dataset keeps its
    name there: DataLad's annexed files lead into ``.git/annex/objects``, a ``derivatives/freesurfer``
    may lead to another disk, and their targets were recorded instead, or the file was said to lie
    outside the dataset), else with both resolved (the dataset given through another path)."""
    try:
        rel = Path(path).absolute().relative_to(Path(root).absolute())
        if ".." not in rel.parts:
            return rel.as_posix()
    except ValueError:
        pass
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return None


def input_uri(path: str | Path, bids_dir: str | Path, links: Sequence[tuple[str, str]] = ()) -> str:
    """An input as the sidecars' ``Sources`` name it: a BIDS URI of the raw dataset
    (``bids:raw:derivatives/freesurfer/sub-01/surf/lh.sulc``; ``raw`` is dataset_description.json's
    DatasetLinks entry of the BIDS folder) when it lies in the BIDS folder (by its name there, a link's
    own, or with links resolved), else of the first of ``links`` ((name, folder) pairs: the other
    DatasetLinks entries, e.g. ``--derivatives smriprep=/elsewhere``) that holds it
    (``bids:smriprep:sub-01/anat/...``), else its path."""
    rel = relative_inside(path, bids_dir)
    if rel is not None:
        return "bids:raw:" + rel
    for name, folder in links:
        rel = relative_inside(path, folder)
        if rel is not None:
            return f"bids:{name}:{rel}"
    return str(path)


def folder_name(folder: str | Path | None, bids_dir: str | Path, links: Sequence[tuple[str, str]] = (),
                output_dir: str | Path | None = None, templateflow_home: str | Path | None = None) -> str | None:
    """A template's folder as the sidecars name it, without this installation's or this user's folders where
    there is a name that does without them (BIDS: paths SHOULD NOT be absolute): the bundled maps'
    ``geomorph_bids:data/templates`` (``package:path``, as ``SpatialReference`` names other packages' files); a
    folder in the BIDS folder or a DatasetLinks dataset by its BIDS URI (:func:`input_uri`), in the output folder
    (a population template) ``bids::<path>``; in ``TEMPLATEFLOW_HOME`` ``templateflow:tpl-<name>``; else its
    path (a folder of the user's own, named by no dataset)."""
    from ..resources import data_dir

    if not folder:
        return None if folder is None else str(folder)
    package = data_dir().parent
    rel = relative_inside(folder, package)
    if rel is not None:
        return f"{package.name}:{rel}"
    uri = input_uri(folder, bids_dir, links)
    if uri != str(folder):
        return uri
    for prefix, root in (("bids::", output_dir), ("templateflow:", templateflow_home)):
        rel = relative_inside(folder, root) if root else None
        if rel is not None:
            return prefix + rel
    return str(folder)
