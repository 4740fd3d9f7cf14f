#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment at <repo>/.venv.
#
# Idempotent: when everything is present this is a quick check (a few seconds).
# mmcv 2.1.0 is built from source with its compiled ops once per
# (torch version, CUDA flavour) and cached as a wheel outside the repository in
# ${MONOASD_WHEEL_CACHE:-$HOME/.cache/monoasd/wheels}; a changed torch triggers
# a rebuild instead of installing an ABI-mismatched wheel.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MONOASD_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${MONOASD_TORCH:-torch==2.13.0}"
CACHE_ROOT="${MONOASD_WHEEL_CACHE:-$HOME/.cache/monoasd/wheels}"
STAMP="$VENV/.monoasd-setup-ok"
# exact versions of the rest of the stack (all but torch and mmcv)
CONSTRAINTS="$ROOT/requirements/constraints.txt"
log() { echo "[setup_env] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment $VENV"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip --disable-pip-version-check -q)

# Fast path: everything was installed by this script and still imports.
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(sha1sum "$0" "$ROOT/setup.cfg" "$CONSTRAINTS" | sha1sum)" ] \
    && "$VPY" - <<'PYEOF' 2>/dev/null
import importlib.metadata as md, torch, mmcv.ops, mmdet3d, monoasd  # noqa
assert md.version('mmcv') == '2.1.0'
PYEOF
then
    log "environment ready ($VENV)"
    exit 0
fi

# 1. torch: keep one that is already installed, otherwise the pinned CPU build.
if ! "$VPY" -c "import torch" 2>/dev/null; then
    log "installing $TORCH_SPEC"
    "${PIP[@]}" install -c "$CONSTRAINTS" "$TORCH_SPEC" numpy
fi
TORCH_VER=$("$VPY" -c "import torch; print(torch.__version__)")
CUDA_FLAVOUR=$("$VPY" -c "import torch; print('cu' + torch.version.cuda.replace('.', '') if torch.version.cuda else 'cpu')")
FORCE_CUDA=0
if command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 \
    && nvidia-smi -L >/dev/null 2>&1 && [ "$CUDA_FLAVOUR" != cpu ]; then
    FORCE_CUDA=1
fi
KEY="torch-${TORCH_VER//+/_}-${CUDA_FLAVOUR}-ops${FORCE_CUDA}-$("$VPY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
WHEEL_DIR="$CACHE_ROOT/$KEY"
log "torch $TORCH_VER ($CUDA_FLAVOUR), mmcv wheel cache $WHEEL_DIR"

# 2. build tools (mmcv's setup.py imports pkg_resources: setuptools<81).
"${PIP[@]}" install -c "$CONSTRAINTS" "setuptools<81" wheel ninja packaging numpy

# 3. mmcv 2.1.0 with compiled ops, from the wheel cache or built from source.
if ! "$VPY" -c "import importlib.metadata as m, mmcv.ops; assert m.version('mmcv') == '2.1.0'" 2>/dev/null; then
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$WHEEL" ]; then
        log "building mmcv 2.1.0 with ops against torch $TORCH_VER (several minutes)"
        mkdir -p "$WHEEL_DIR"
        TMP_DIR=$(mktemp -d "$CACHE_ROOT/build.XXXXXX")
        MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA CFLAGS="-g0" CXXFLAGS="-g0" \
            MAX_JOBS="$(nproc)" "${PIP[@]}" wheel --no-build-isolation --no-deps \
            --no-binary mmcv -w "$TMP_DIR" "mmcv==2.1.0"
        # publish atomically so that an interrupted build never leaves a partial wheel
        mv "$TMP_DIR"/mmcv-2.1.0-*.whl "$WHEEL_DIR"/ && rm -rf "$TMP_DIR"
        WHEEL=$(ls "$WHEEL_DIR"/mmcv-2.1.0-*.whl | head -n 1)
    else
        log "reusing cached $WHEEL"
    fi
    "${PIP[@]}" install "$WHEEL"
fi

# 4. OpenMMLab stack. mmdet3d without its nuScenes/Lyft pins, plus what its imports need.
"${PIP[@]}" install -c "$CONSTRAINTS" "mmengine==0.10.7" "mmdet==3.3.0" "opencv-python>=4.8,<5" \
    "numba>=0.58" "shapely>=2" pyquaternion trimesh "matplotlib>=3.7" scipy \
    "scikit-image" "scikit-learn" cachetools pandas "plyfile" "tqdm" "terminaltables" "pytest" "pytest-timeout" "rich" "prettytable"
"${PIP[@]}" install --no-deps "mmdet3d==1.4.0" "nuscenes-devkit==1.1.11" "lyft_dataset_sdk==0.0.8"
"${PIP[@]}" install --no-deps -e "$ROOT"

"$VPY" - <<'PYEOF'
import importlib.metadata as md
import torch, mmcv.ops, mmdet, mmdet3d, mmengine, monoasd  # noqa
print('[setup_env] torch', torch.__version__, '| mmcv', md.version('mmcv'), '| mmengine',
      mmengine.__version__, '| mmdet', mmdet.__version__, '| mmdet3d', mmdet3d.__version__)
PYEOF
sha1sum "$0" "$ROOT/setup.cfg" "$CONSTRAINTS" | sha1sum > "$STAMP"
log "environment ready ($VENV)"
