#!/usr/bin/env bash
# Wheels for `python -m experiments.cuda_check` on a lent GPU machine that has Python 3.12 and a CUDA
# build of torch but nothing else of ours and no network. Downloads exactly the packages the check
# imports, at the versions installed here, into .whl/ (git-ignored through .git/info/exclude), removes
# any other wheel there, and prints the total size. Idempotent: wheels already there are not fetched again.
#
# On the device (carry [".whl"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#
# What needs what (found with `python -X importtime` on short runs of every checked pair):
#   the runner            gymnasium (+ cloudpickle, farama-notifications, typing_extensions), numpy,
#                         pyyaml, jsonschema (+ attrs, jsonschema-specifications, referencing, rpds-py),
#                         tqdm (progress bar, only on a tty)
#   MinAtar/Breakout-v0   minatar (its matplotlib/seaborn imports are optional: a logged warning)
#   acer on MinAtar       stable-baselines3: the minatar family sets rmsprop_tf_like, and
#                         algorithms/acer.py imports SB3's RMSpropTFLike for it (SB3 2.9 needs no pandas)
#   Hopper-v5             mujoco + mujoco-core (mujoco-studio, pyopengl not imported); gymnasium's
#                         MujocoEnv imports its renderer module: glfw, imageio, packaging
# torch is on the device; numpy is bundled anyway (cp312), in case its torch came without it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=.whl
PY=${PYTHON:-python3}
PKGS=(
    numpy==2.4.6
    gymnasium==1.4.0 cloudpickle==2.1.0 farama-notifications==0.0.6 typing_extensions==4.15.0
    pyyaml==6.0.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0
    rpds-py==0.30.0 attrs==26.1.0 tqdm==4.70.1
    minatar==1.0.15 stable-baselines3==2.9.2
    mujoco==4.0.0 mujoco-core==4.0.0 glfw==2.11.0 imageio==2.38.1 packaging==25.0
)
mkdir -p "$DEST"
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info && echo '/.whl/' >> .git/info/exclude; }
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    PLATFORMS+=(--platform "$p")
done
"$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]}" -d "$DEST" "${PKGS[@]}"
# keep exactly one wheel per package: the pinned version (wheel names: lower-case, '-' and '.' → '_')
keep=()
for spec in "${PKGS[@]}"; do
    keep+=("$(echo "${spec%%==*}" | tr 'A-Z.-' 'a-z__')-${spec##*==}-")
done
found=0
for whl in "$DEST"/*.whl; do
    base=$(basename "$whl" | tr 'A-Z' 'a-z')
    ok=0
    for k in "${keep[@]}"; do [[ $base == "$k"* ]] && ok=1 && break; done
    if [[ $ok == 1 ]]; then found=$((found + 1)); else echo "removing $whl (not in the list)"; rm -f "$whl"; fi
done
if [[ $found != "${#PKGS[@]}" ]]; then
    echo "error: $found wheels for ${#PKGS[@]} packages in $DEST" >&2
    exit 1
fi
du -cb "$DEST"/*.whl | tail -1 | awk -v n="$found" '{printf "%d wheels, %.1f MiB in .whl/\n", n, $1 / 1048576}'
