"""Oxford Flowers-102 in its official layout, read through torchvision.datasets.Flowers102.

torchvision insists on `<root>/flowers-102/` and checks the md5 of the official .mat files; we accept the
folder that holds the files directly as well, check that every file a split needs is present (with a message
that names the path and the expected layout), and leave the md5 check on request (`verify_md5`), since a
re-packed or subset copy of the dataset is legitimate input.
"""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets import Flowers102

from edgecomp.errors import DatasetError

EXPECTED_LAYOUT = (
    "<root>/jpg/image_00001.jpg ... (one JPEG per image id), <root>/imagelabels.mat (key 'labels', "
    "1-based class per image id) and <root>/setid.mat (keys 'trnid', 'valid', 'tstid': image ids per split); "
    "<root>/flowers-102/ holding these is accepted too"
)
SPLITS = ("train", "val", "test")


class _Flowers102(Flowers102):
    """torchvision's reader with the base folder given directly and the md5 check optional."""

    def __init__(self, base_folder: Path, split: str, transform, verify_md5: bool) -> None:
        self._resolved_base = base_folder
        self._verify_md5 = verify_md5
        super().__init__(root=base_folder.parent, split=split, transform=transform, download=False)

    # torchvision derives the base folder from root (`root / "flowers-102"`); ours is already resolved.
    @property
    def _base_folder(self) -> Path:
        return self._resolved_base

    @_base_folder.setter
    def _base_folder(self, _ignored) -> None:
        pass

    def _check_integrity(self) -> bool:
        return super()._check_integrity() if self._verify_md5 else True


class Flowers102Source:
    """A classification source over an on-disk Flowers-102 copy (no download)."""

    def __init__(self, root: str | os.PathLike, verify_md5: bool = False) -> None:
        self.root = Path(root)
        self.verify_md5 = verify_md5
        self.base = self._find_base()
        self.num_classes = 102

    def _find_base(self) -> Path:
        if not self.root.exists():
            raise DatasetError(
                f"flowers102: dataset root {self.root} does not exist. Expected layout: {EXPECTED_LAYOUT}. "
                "Set dataset.root=PATH."
            )
        for base in (self.root, self.root / "flowers-102"):
            if (base / "jpg").is_dir() or (base / "setid.mat").exists():
                missing = [n for n in ("jpg", "imagelabels.mat", "setid.mat") if not (base / n).exists()]
                if missing:
                    raise DatasetError(
                        f"flowers102: {base} lacks {', '.join(missing)}. Expected layout: {EXPECTED_LAYOUT}."
                    )
                return base
        raise DatasetError(
            f"flowers102: no Flowers-102 files under {self.root} (no jpg/ or setid.mat there or in "
            f"{self.root / 'flowers-102'}). Expected layout: {EXPECTED_LAYOUT}."
        )

    def dataset(self, split: str, transform=None) -> Flowers102:
        if split not in SPLITS:
            raise DatasetError(f"flowers102 has splits {SPLITS}, not {split!r}")
        try:
            data = _Flowers102(self.base, split, transform, self.verify_md5)
        except (KeyError, ValueError, OSError, RuntimeError) as err:
            raise DatasetError(
                f"flowers102: could not read the split {split!r} from {self.base} ({type(err).__name__}: {err}). "
                f"Expected layout: {EXPECTED_LAYOUT}."
            ) from err
        missing = [f for f in data._image_files if not f.exists()]
        if missing:
            raise DatasetError(
                f"flowers102: {len(missing)} image(s) of the {split!r} split are missing, the first being "
                f"{missing[0]}. Expected layout: {EXPECTED_LAYOUT}."
            )
        return data
