#!/usr/bin/env bash
# Make an offline bundle for GPU nodes without network: OUT/wheels (every package the suite's
# cells, sweeps and GPU checks import, for the node's Python, torch and processor) and
# OUT/data/FashionMNIST/raw (Fashion-MNIST's four idx files). A node needs only its own
# torch (a CUDA build) and numpy.
#
#   bash scripts/offline-bundle.sh OUT [--python 3.12] [--torch 2.11] [--platform x86_64|aarch64] [--full]
#   bash scripts/gpu-check.sh --bundle OUT          # on the node: installs from it, no network
#
# --torch X.Y: the node's torch; the bundle brings the torchvision built for it (0.(Y+15)),
# default this checkout's torch. --full adds what only the report needs (pandas, matplotlib,
# seaborn and theirs), to render tables and figures on the node too.
# Versions of the other packages are the ones installed in this checkout's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "error: $*" >&2; exit 2; }
value() {  # OPTION VALUE: the value, or one error line when it is missing
  [ -n "${2:-}" ] && [ "${2#-}" = "$2" ] || die "$1 needs a value (see --help)"
}
OUT=""; PYVER=""; TORCH=""; ARCH=x86_64; FULL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --python) value "$1" "${2:-}"; PYVER=$2; shift 2 ;;
    --python=*) PYVER=${1#*=}; shift ;;
    --torch) value "$1" "${2:-}"; TORCH=$2; shift 2 ;;
    --torch=*) TORCH=${1#*=}; shift ;;
    --platform) value "$1" "${2:-}"; ARCH=$2; shift 2 ;;
    --platform=*) ARCH=${1#*=}; shift ;;
    --full) FULL=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$OUT" ] || die "one output folder, got $OUT and $1"; OUT=$1; shift ;;
  esac
done
[ -n "$OUT" ] || die "give the output folder: bash scripts/offline-bundle.sh OUT [--python 3.12]"
[ ! -e "$OUT" ] || [ -d "$OUT" ] || die "$OUT is a file, not a folder"
mkdir -p "$OUT" 2>/dev/null && [ -w "$OUT" ] || die "$OUT cannot be created or is not writable"
PY=.venv/bin/python; [ -x "$PY" ] || PY=python3
PYVER=${PYVER:-$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
[[ "$PYVER" =~ ^3\.[0-9]+$ ]] || die "--python takes a version such as 3.12, got $PYVER"
TORCH=${TORCH:-$("$PY" -c 'import torch; print(".".join(torch.__version__.split(".")[:2]))' 2>/dev/null || true)}
[[ "$TORCH" =~ ^2\.([0-9]+)$ ]] || die "--torch takes the node's torch version such as 2.11, got '${TORCH}'"
VISION="0.$((BASH_REMATCH[1] + 15))"   # torchvision 0.(Y+15) is built for torch 2.Y
case "$ARCH" in
  x86_64) PLATFORMS=(manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_28_x86_64) ;;
  aarch64) PLATFORMS=(manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_28_aarch64) ;;
  *) die "--platform is x86_64 or aarch64, got $ARCH" ;;
esac
TAG=cp${PYVER/./}

# What the suite imports beyond torch and numpy (and torch's own: filelock, typing_extensions, ...):
# cells and sweeps, pinned to this checkout's versions, and what they need in turn.
SUITE="torchdiffeq torch-fidelity submitit cloudpickle omegaconf PyYAML lycoris-lora einops toml safetensors
       tqdm scipy scikit-learn joblib threadpoolctl narwhals pillow"
REPORT="pandas matplotlib seaborn tabulate contourpy cycler fonttools kiwisolver packaging pyparsing
        python-dateutil six tzdata"
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
PLATFORM=(--python-version "$PYVER" --implementation cp --abi "$TAG" --abi abi3 --abi none --only-binary=:all:)
for p in "${PLATFORMS[@]}"; do PLATFORM+=(--platform "$p"); done
download() {
  # shellcheck disable=SC2068
  "$PY" -m pip download -q --no-deps -d "$OUT/wheels" "${PLATFORM[@]}" $@ 2> >(grep -v "is ignored" >&2) \
    || die "pip could not download $* for CPython $PYVER on $ARCH (see pip's message above)"
}
echo "== wheels for CPython $PYVER, torch $TORCH, $ARCH into $OUT/wheels"
# shellcheck disable=SC2046
download $(pins $SUITE)
download "torchvision==$VISION.*"
if [ "$FULL" = 1 ]; then
  # shellcheck disable=SC2046
  download $(pins $REPORT)
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
{ echo "funlora-bench offline bundle for CPython $PYVER, torch $TORCH, $ARCH ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo "wheels: $(ls "$OUT/wheels" | tr '\n' ' ')"
  echo "expected on the node: torch $TORCH and numpy$([ "$FULL" = 1 ] || echo "; for bench.report also: $REPORT" | tr -s ' \n' ' ')"
  echo "data: Fashion-MNIST idx files in data/FashionMNIST/raw (data_root=$OUT/data)"; } >"$OUT/MANIFEST.txt"
echo "bundle: $OUT, ${SIZE} MB ($(ls "$OUT/wheels" | wc -l) wheels + Fashion-MNIST); on the node: bash scripts/gpu-check.sh --bundle $OUT"
