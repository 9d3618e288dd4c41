"""Ultralytics (AGPL-3.0) stays behind the YOLOv8 adapter: a fresh interpreter imports edgecomp's pipelines and the
other detectors without it, and a YOLO model imports it offline with its settings outside the home folder."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_ultralytics_is_imported_only_with_a_yolo_model_and_offline(tmp_path):
    """AGPL-3.0 stays behind the adapter: the rest of edgecomp (every entry point's pipeline, the other
    detectors) never imports it; building a YOLO model does, offline and with its settings outside the home."""
    code = (
        "import sys\n"
        "import edgecomp.pipelines.train, edgecomp.pipelines.evaluate, edgecomp.pipelines.compress\n"
        "import edgecomp.models.detection.torchvision_dense, edgecomp.models.detection.create\n"
        "assert 'ultralytics' not in sys.modules, 'imported without a YOLO model'\n"
        "from edgecomp.models.detection.yolov8 import YOLOv8Adapter\n"
        "assert 'ultralytics' not in sys.modules, 'imported by the adapter module itself'\n"
        "YOLOv8Adapter(2, 64)\n"
        "import os\n"
        "assert 'ultralytics' in sys.modules and os.environ['YOLO_OFFLINE'] == '1'\n"
        "print(os.environ['YOLO_CONFIG_DIR'])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "cache" / "edgecomp" / "ultralytics")
    home = tmp_path / "home"  # (other libraries, matplotlib for one, may write their own config there)
    assert not [path for path in home.rglob("*") if "ultralytics" in path.name.lower()]
