#!/usr/bin/env bash
# Install edgecomp's optional MMDetection extra (requirements-mmdet.txt) into the current Python environment.
#
#   bash scripts/install_mmdet.sh
#
# mmdet 3.3 needs mmcv < 2.2, and mmcv 2.1.0 has no wheel for torch 2.14, so it is built from its source release:
# its setup.py asks for C++14/17, which torch 2.14's headers (C++20) refuse, so the flag is raised to c++20, and the
# build runs in a throwaway virtual environment that sees this environment's torch but has a setuptools that still
# ships pkg_resources (mmcv's setup.py imports it). CPU ops only (FORCE_CUDA=1 with nvcc for CUDA ops). The wheel is
# kept in $EDGECOMP_WHEELS (default ~/.cache/edgecomp/wheels): a machine builds it once (2 min 14 s, install
# included, on 2 cores of an Intel Xeon), later installs take seconds. Needs a C++ compiler and Python's headers.
set -euo pipefail
cd "$(dirname "$0")/.."
MMCV_VERSION=2.1.0
WHEELS="${EDGECOMP_WHEELS:-$HOME/.cache/edgecomp/wheels}"
mkdir -p "$WHEELS"
wheel=$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "building mmcv $MMCV_VERSION from source into $WHEELS (once per machine)"
  python -m venv --system-site-packages "$work/venv"
  "$work/venv/bin/pip" install -q "setuptools<80" wheel
  "$work/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
  tar xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  sed -i 's/-std=c++1[47]/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
  # A unity build: each of mmcv's 83 op sources re-parses torch's headers, about 8 s of a core each and most of the
  # build; #included into a few translation units they parse them a few times (a third of the build time, measured).
  # setup.py compiles what its globs find in csrc/pytorch and csrc/pytorch/cpu, so the sources move one folder down
  # and CHUNKS files there include them, in turn. Four CPU kernels stay alone: three define helpers the others
  # define too, psamask defines min/max macros.
  ops="$work/mmcv-$MMCV_VERSION/mmcv/ops/csrc/pytorch"
  unity() {  # unity FOLDER NAME CHUNKS [SOURCE LEFT ALONE ...]
    local folder=$1 name=$2 chunks=$3 source position=0
    shift 3
    mkdir "$folder/$name"
    mv "$folder"/*.cpp "$folder/$name/"
    for source in "$@"; do mv "$folder/$name/$source.cpp" "$folder/"; done
    for source in "$folder/$name"/*.cpp; do
      echo "#include \"$name/${source##*/}\"" >>"$folder/${name}_$((position++ % chunks)).cpp"
    done
  }
  unity "$ops" dispatch 3
  unity "$ops/cpu" kernels 1 roi_align roi_align_rotated rotated_feature_align psamask
  # CFLAGS=-g0: no debug information (Python's own flags ask for -g), which takes half the compile time
  (cd "$work/mmcv-$MMCV_VERSION" && CFLAGS="${CFLAGS:-} -g0" MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$work/venv/bin/pip" wheel -q --no-build-isolation --no-deps -w "$WHEELS" .)
  wheel=$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
fi
pip install "$wheel" -r requirements-mmdet.txt -c constraints.txt
python -c "import mmcv.ops, mmdet, torch; print(f'mmdet {mmdet.__version__}, mmcv {mmcv.__version__} (ops), torch {torch.__version__}')"
