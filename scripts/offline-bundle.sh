#!/usr/bin/env bash
# Make an offline bundle for GPU nodes without network: OUT/wheels (the suite's dependencies
# for the node's Python, except torch, torchvision and triton, which a node brings in its own
# CUDA build) and OUT/data/FashionMNIST/raw (Fashion-MNIST's four idx files).
#
#   bash scripts/offline-bundle.sh OUT [--python 3.12] [--full]
#   bash scripts/gpu-check.sh --bundle OUT          # on the node: installs from it, no network
#
# By default the bundle leaves out the scientific stack that every PyTorch environment we know
# of has (numpy, scipy, pandas, matplotlib, scikit-learn, pillow): with it, the wheels alone are
# about 90 MB for CPython 3.12. --full adds them (and what they need). Versions are the ones
# installed in this checkout's .venv, so the node runs what the tests ran.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=""; PYVER=""; FULL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) PYVER=${2:-}; shift 2 ;;
    --python=*) PYVER=${1#*=}; shift ;;
    --full) FULL=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) [ -z "$OUT" ] || { echo "error: one output folder, got $OUT and $1" >&2; exit 2; }; OUT=$1; shift ;;
  esac
done
[ -n "$OUT" ] || { echo "error: give the output folder: bash scripts/offline-bundle.sh OUT [--python 3.12]" >&2; exit 2; }
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
PYVER=${PYVER:-$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || { echo "error: --python takes a version such as 3.12, got $PYVER" >&2; exit 2; }
TAG=cp${PYVER/./}

# The suite's dependencies (pyproject) and theirs, less torch's own and the scientific stack.
LIGHT="torchdiffeq torch-fidelity submitit cloudpickle typing_extensions omegaconf PyYAML lycoris-lora einops toml
       safetensors tabulate tqdm seaborn filelock"
HEAVY="numpy scipy pandas matplotlib scikit-learn pillow"
pins() {  # NAME... -> NAME==VERSION as installed here (NAME alone where it is not)
  "$PY" - "$@" <<'PYEOF'
import sys
from importlib.metadata import PackageNotFoundError, version
for name in sys.argv[1:]:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        print(name)
PYEOF
}
mkdir -p "$OUT/wheels" "$OUT/data/FashionMNIST/raw"
PLATFORM=(--python-version "$PYVER" --implementation cp --abi "$TAG" --only-binary=:all:
          --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)
echo "== wheels for CPython $PYVER into $OUT/wheels"
# shellcheck disable=SC2046
"$PY" -m pip download -q --no-deps -d "$OUT/wheels" "${PLATFORM[@]}" $(pins $LIGHT) 2> >(grep -v "is ignored" >&2)
if [ "$FULL" = 1 ]; then
  # shellcheck disable=SC2046
  "$PY" -m pip download -q -d "$OUT/wheels" "${PLATFORM[@]}" $(pins $HEAVY) 2> >(grep -v "is ignored" >&2)
  rm -f "$OUT"/wheels/torch-* "$OUT"/wheels/torchvision-* "$OUT"/wheels/triton-* "$OUT"/wheels/nvidia_* "$OUT"/wheels/cuda_*
fi

echo "== Fashion-MNIST's idx files into $OUT/data/FashionMNIST/raw"
SRC=/usr/share/datasets/fashion-mnist
if [ ! -f "$SRC/train-images-idx3-ubyte.gz" ]; then   # the Debian package, unpacked here without installing it
  TMP=$(mktemp -d)
  (cd "$TMP" && apt-get download dataset-fashion-mnist >/dev/null 2>&1 && dpkg-deb -x ./*.deb x) \
    || { echo "error: Fashion-MNIST: no $SRC and apt-get download dataset-fashion-mnist failed" >&2; exit 1; }
  SRC=$TMP/x/usr/share/datasets/fashion-mnist
fi
cp "$SRC"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$OUT/data/FashionMNIST/raw/"

SIZE=$(du -sm "$OUT" | cut -f1)
{ echo "funlora-bench offline bundle for CPython $PYVER ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo "wheels: $(ls "$OUT/wheels" | tr '\n' ' ')"
  [ "$FULL" = 1 ] || echo "expected on the node: torch (CUDA), torchvision, $HEAVY"
  echo "data: Fashion-MNIST idx files in data/FashionMNIST/raw (data_root=$OUT/data)"; } >"$OUT/MANIFEST.txt"
echo "bundle: $OUT, ${SIZE} MB ($(ls "$OUT/wheels" | wc -l) wheels + Fashion-MNIST); on the node: bash scripts/gpu-check.sh --bundle $OUT"
