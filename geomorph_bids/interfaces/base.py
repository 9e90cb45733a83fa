"""What every interface's inputs share: the build of geomorph-bids that runs the node."""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, traits

__all__ = ["KeyedInputSpec"]


class KeyedInputSpec(BaseInterfaceInputSpec):
    """Inputs of a geomorph-bids node: ``software`` (:func:`geomorph_bids.io.digest.software_id`,
    ``RunConfig.software``) is part of the node's cache key, so a result that another build of
    geomorph-bids left in the work folder (a rerun after an upgrade) is computed again instead of
    being written out as this build's."""

    software = traits.Str("", usedefault=True, desc="the build of geomorph-bids that runs this node: part of "
                                                    "the cache key, so an upgrade recomputes the step")
