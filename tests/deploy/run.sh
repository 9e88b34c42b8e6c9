#!/usr/bin/env bash
# The offline checks of the Kubernetes manifests (ctest label deploy).
#
#   run.sh render  PYTHON   kubectl kustomize renders each overlay and the
#                           MicroShift manifests.d layout; equal to golden/
#   run.sh schema  PYTHON   each render validates (kubernetes-validate,
#                           --strict, Kubernetes 1.32 schemas bundled in the
#                           package); a broken copy must not
#   run.sh policy  PYTHON   tests/deploy/policy.py over each fresh render
#   run.sh unit    PYTHON   tests/deploy/policy_test.py: each rule can fail
#
# Exit 77 (skipped, shown by ctest) when kubectl or kubernetes-validate is
# missing: scripts/deps.sh installs kubernetes-validate; kubectl comes with
# the machine (it is not a Debian package). Golden files: regenerate with
# deploy/kustomize/render.sh --update-golden and review the diff.
set -euo pipefail
mode=${1:?usage: run.sh render|schema|policy|unit PYTHON}
py=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
render=$root/deploy/kustomize/render.sh
OVERLAYS=(base microshift openshift)
K8S_VERSION=1.32.0 # kubectl here, MicroShift/OpenShift 4.19

skip() { echo "SKIPPED: $*"; exit 77; }
need_kubectl() { command -v "${KUBECTL:-kubectl}" >/dev/null || skip "kubectl not found"; }
need_yaml() { "$py" -c 'import yaml' 2>/dev/null || skip "PyYAML missing for $py (scripts/deps.sh)"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_deploy.XXXXXX")
trap 'rm -rf "$work"' EXIT

case $mode in
  render)
    need_kubectl
    fail=0
    for o in "${OVERLAYS[@]}"; do
      "$render" "$o" >"$work/$o.yaml"
      if diff -u "$here/golden/$o.yaml" "$work/$o.yaml" >"$work/$o.diff"; then
        echo "ok: $o renders as golden/$o.yaml"
      else
        cat "$work/$o.diff"
        echo "FAIL: $o differs from golden/$o.yaml (deploy/kustomize/render.sh --update-golden, review, commit)"
        fail=1
      fi
    done
    # What MicroShift applies: /etc/microshift/manifests.d/sluice/
    "$render" --microshift-dir "$work/manifests.d/sluice"
    "${KUBECTL:-kubectl}" kustomize "$work/manifests.d/sluice" >"$work/installed.yaml"
    if diff -u "$here/golden/microshift.yaml" "$work/installed.yaml"; then
      echo "ok: manifests.d/sluice renders as golden/microshift.yaml"
    else
      echo "FAIL: the manifests.d layout renders differently"; fail=1
    fi
    exit $fail
    ;;
  schema)
    need_kubectl
    "$py" -c 'import kubernetes_validate' 2>/dev/null ||
      skip "kubernetes-validate missing for $py (scripts/deps.sh installs it)"
    validate() { "$py" -m kubernetes_validate --strict --quiet -k "$K8S_VERSION" "$@"; }
    for o in "${OVERLAYS[@]}"; do
      "$render" "$o" >"$work/$o.yaml"
      validate "$work/$o.yaml"
      echo "ok: $o validates against the Kubernetes $K8S_VERSION schemas (strict)"
    done
    # The validator must be able to fail: a wrong type and an unknown field.
    sed 's/^  replicas: 1/  replicas: "one"/' "$work/base.yaml" >"$work/bad-type.yaml"
    sed 's/^      automountServiceAccountToken: false/      automountServiceAcountToken: false/' \
      "$work/base.yaml" >"$work/bad-field.yaml"
    for bad in bad-type bad-field; do
      cmp -s "$work/base.yaml" "$work/$bad.yaml" && { echo "FAIL: $bad fixture not made"; exit 1; }
      if validate "$work/$bad.yaml" >"$work/$bad.out" 2>&1; then
        echo "FAIL: the broken copy $bad validated"; exit 1
      fi
      echo "ok: broken copy $bad refused: $(grep -m1 -i 'error\|invalid\|not' "$work/$bad.out" | cut -c1-160)"
    done
    ;;
  policy)
    need_kubectl
    need_yaml
    for o in "${OVERLAYS[@]}"; do "$render" "$o" >"$work/$o.yaml"; done
    "$py" "$here/policy.py" $(printf "$work/%s.yaml " "${OVERLAYS[@]}") 2>&1 | sed "s|$work/||"
    exit "${PIPESTATUS[0]}"
    ;;
  unit)
    need_yaml
    exec "$py" "$here/policy_test.py" "$here/golden"
    ;;
  *)
    echo "usage: run.sh render|schema|policy|unit PYTHON" >&2; exit 2
    ;;
esac
