#!/usr/bin/env bash
# The deployment files, checked offline: every manifest in deploy/k8s/ against the
# Kubernetes API schemas (kubernetes-validate, strict: an unknown field is an error) for
# the version below, and the Dockerfile with hadolint. No cluster or registry is needed
# or touched. Installs the pinned tools into a venv where missing, and fails, never
# skips, when it cannot.
#
# Usage: scripts/validate_deploy.sh   (K8S_VERSION [1.33.0]; DEPLOY_VENV [target/deploy-venv])
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "validate_deploy: $*" >&2; exit 1; }
K8S_VERSION=${K8S_VERSION:-1.33.0}
VENV=${DEPLOY_VENV:-target/deploy-venv}
REQS=scripts/deploy-requirements.txt

have_pins() {
  local frozen pin
  frozen=$("$VENV/bin/pip" freeze 2>/dev/null) || return 1
  while read -r pin; do
    grep -qixF "$pin" <<<"$frozen" || return 1
  done < <(grep -E '^[A-Za-z]' "$REQS")
}
if ! have_pins; then
  command -v python3 >/dev/null || die "python3 is missing"
  [[ -x $VENV/bin/pip ]] || python3 -m venv "$VENV" || die "cannot make a venv in $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQS" ||
    die "cannot install $REQS from PyPI"
fi

shopt -s nullglob
manifests=(deploy/k8s/*.yaml)
((${#manifests[@]})) || die "no manifests in deploy/k8s/"
echo "== kubernetes-validate --strict (Kubernetes $K8S_VERSION): ${manifests[*]}"
"$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$K8S_VERSION" "${manifests[@]}" ||
  die "a manifest does not validate"

echo "== hadolint Dockerfile"
"$VENV/bin/hadolint" Dockerfile || die "the Dockerfile has lint findings"
echo "validate_deploy: ok (${#manifests[@]} manifests, the Dockerfile)"
