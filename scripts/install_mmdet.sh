#!/usr/bin/env bash
# Install edgecomp's optional MMDetection extra (requirements-mmdet.txt) into the current Python environment.
#
#   bash scripts/install_mmdet.sh
#
# mmdet 3.3 needs mmcv < 2.2, and mmcv 2.1.0 has no wheel for torch 2.14, so it is built from its source release:
# its setup.py asks for C++14/17, which torch 2.14's headers (C++20) refuse, so the flag is raised to c++20, and the
# build runs in a throwaway virtual environment that sees this environment's torch but has a setuptools that still
# ships pkg_resources (mmcv's setup.py imports it). CPU ops only: the unity build below was not tried with CUDA ops
# (FORCE_CUDA=1, or a CUDA torch, makes mmcv's setup.py compile them with nvcc). The wheel is kept in
# $EDGECOMP_WHEELS (default ~/.cache/edgecomp/wheels), in a folder named for the torch it was built against: a machine
# builds it once (1 min 23 s, install included, on 2 cores of an Intel Xeon), later installs take seconds. Needs a
# C++ compiler, Python's headers and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
MMCV_VERSION=2.1.0
export LC_ALL=C  # the order globs list the sources in, so the unity build's chunks are the same everywhere
# mmcv's C++ ops are built against one torch (its C++ ABI) for one Python: the wheel is kept per torch version
torch_version=$(python -c "import torch; print(torch.__version__)")
python_tag=$(python -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")
WHEELS="${EDGECOMP_WHEELS:-$HOME/.cache/edgecomp/wheels}/torch-$torch_version"
mkdir -p "$WHEELS"
wheel=$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-"$python_tag"-*.whl 2>/dev/null | head -n 1 || true)
if [ -z "$wheel" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "building mmcv $MMCV_VERSION from source into $WHEELS (once per machine)"
  python -m venv --system-site-packages "$work/venv"
  "$work/venv/bin/pip" install -q "setuptools<80" wheel
  "$work/venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
  tar xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
  sed -i 's/-std=c++1[47]/-std=c++20/g' "$work/mmcv-$MMCV_VERSION/setup.py"
  # -g0 last among the C++ flags: no debug information (Python's own flags ask for -g), which took more than half of
  # the compile time; the optimisation flags (-O3) stay as Python gives them
  sed -i "/'cxx'/ s/'-std=c++20'/'-std=c++20', '-g0'/" "$work/mmcv-$MMCV_VERSION/setup.py"
  # A unity build: each of mmcv's 77 op sources re-parses torch's headers, about 8 s of a core each and most of the
  # build; #included into a few translation units they parse them a few times.
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
  # Built into the throwaway folder, then renamed into the cache: an interrupted build or copy leaves no wheel there
  (cd "$work/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
    "$work/venv/bin/pip" wheel -q --no-build-isolation --no-deps -w "$work/dist" .)
  built=$(ls "$work"/dist/mmcv-"$MMCV_VERSION"-*.whl)
  wheel="$WHEELS/${built##*/}"
  cp "$built" "$wheel.part"
  mv "$wheel.part" "$wheel"
fi
pip install "$wheel" -r requirements-mmdet.txt -c constraints.txt
python -c "import mmcv.ops, mmdet, torch; print(f'mmdet {mmdet.__version__}, mmcv {mmcv.__version__} (ops), torch {torch.__version__}')"
