# Sourced by app.sh and test.sh: a virtual environment in the checkout with the pinned packages,
# and the offline data mirror when this machine has one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "digitlab: creating .venv (first run only; torch is large, this takes a few minutes)" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --disable-pip-version-check -q -r requirements.txt
  echo "$want" > "$stamp"
fi
# Offline machines keep MNIST and Fashion-MNIST beside the checkout; elsewhere torchvision downloads them.
if [ -z "${DIGITLAB_MIRROR:-}" ] && [ -d "$ROOT/../shared/data/mnist" ]; then
  export DIGITLAB_MIRROR="$ROOT/../shared/data"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
