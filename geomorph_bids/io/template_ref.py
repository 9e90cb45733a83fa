"""Which registration template a run uses, decided once: :class:`TemplateRef`.

Every entry point turns the user's template argument (``--template``, ``template=``) into a
:class:`TemplateRef` with :func:`resolve_template_ref` and hands it down; the workflows, the
interfaces, the reports and the group level load the maps through it and never search again.
A name is looked up, in order: a bundled template (``fsLR``, ``fsaverage``), a custom template
folder given by path, then ``tpl-<name>`` in each folder of the search path
(:func:`template_search_path`: where ``group --build-template`` writes).

This module is where new template sources belong (e.g. TemplateFlow or a FreeSurfer
``fsaverage`` subject): :func:`resolve_template_ref` decides which one a name refers to and
records it in the reference, and :meth:`TemplateRef.load` reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from .custom_template import DESCRIPTION, custom_template_info, find_custom_template, load_custom_template
from .templates import Template, available_templates, is_bundled_template, load_template

__all__ = ["TemplateRef", "resolve_template_ref", "template_search_path", "resolve_template"]


@dataclass(frozen=True)
class TemplateRef:
    """A resolved registration template.

    Attributes
    ----------
    label : the template's name in output names (``space-<label>``): ``fsLR``, ``fsaverage`` or
        a custom template's ``Identifier``.
    base : the standard template (``fsLR`` or ``fsaverage``) whose spherical coordinates the
        maps use; output densities are its spheres.
    folder : a custom template's folder (``tpl-<label>``, absolute), or None for bundled maps.
    """

    label: str
    base: str
    folder: Path | None = None

    @classmethod
    def bundled(cls, name: str) -> "TemplateRef":
        """A bundled template by name (ValueError naming the bundled ones otherwise)."""
        if not is_bundled_template(name):
            raise ValueError(f"unknown template {name!r}: not a bundled template")
        return cls(str(name), str(name))

    @property
    def is_bundled(self) -> bool:
        """Whether the maps are the bundled ones (no folder)."""
        return self.folder is None

    def load(self, hemi: str, features: Sequence[str] = ("sulc",)) -> Template:
        """The template of one hemisphere with ``features`` (ico-6 grid, FreeSurfer sign)."""
        if self.folder is None:
            return load_template(self.label, hemi, tuple(features))
        return load_custom_template(self.folder, hemi, features)

    def registration_target(self, hemi: str, features: Sequence[str]) -> "str | Template":
        """What :func:`geomorph_bids.engine.register.register` is given: a bundled template by
        name (it then loads the hemisphere a mirrored model needs), a custom one loaded."""
        return self.label if self.folder is None else self.load(hemi, features)

    def to_dict(self) -> dict[str, str]:
        """Plain strings (a Nipype input); :meth:`from_dict` is the inverse."""
        return {"label": self.label, "base": self.base, "folder": "" if self.folder is None else str(self.folder)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TemplateRef":
        return cls(str(d["label"]), str(d["base"]), Path(d["folder"]) if d.get("folder") else None)


def template_search_path(output_dir: str | Path) -> tuple[Path, ...]:
    """Folders searched for ``tpl-<label>`` when a template is named by label: the output
    folder (where ``group --build-template`` writes) and its ``templates/`` sub-folder."""
    return (Path(output_dir), Path(output_dir) / "templates")


def resolve_template_ref(name: str | Path, search: Sequence[str | Path] = ()) -> TemplateRef:
    """A bundled template by name, else a custom template folder (a path, or ``tpl-<name>`` in
    one of ``search``). Raises :class:`InputError` (one line) when neither exists or the
    folder's ``BaseTemplate`` is not a bundled template."""
    if is_bundled_template(str(name)):
        return TemplateRef.bundled(str(name))
    folder = find_custom_template(name, search)
    if folder is None:
        where = ", ".join(str(p) for p in search) or "no search folder"
        raise InputError(f"unknown template {str(name)!r}: not bundled ({', '.join(available_templates())}), and no "
                         f"custom template folder (tpl-<label> with {DESCRIPTION}) at that path or in {where}")
    info = custom_template_info(folder)
    base = str(info.get("BaseTemplate", ""))
    if not is_bundled_template(base):
        raise InputError(f"custom template has BaseTemplate {base!r}; expected {' or '.join(available_templates())}",
                         path=folder / DESCRIPTION)
    return TemplateRef(str(info["Identifier"]), base, folder.absolute())


def resolve_template(name: str | Path, hemi: str, features: Sequence[str] = ("sulc",),
                     search: Sequence[str | Path] = ()) -> Template:
    """Load a template by name or folder (:func:`resolve_template_ref`, then :meth:`TemplateRef.load`)."""
    return resolve_template_ref(name, search).load(hemi, features)
