#!/usr/bin/env bash
# One idempotent setup for a fresh Debian 12 machine (run as root, or with the
# apt packages already present): apt packages, pnpm, workspace dependencies,
# a build of the native addon and every TypeScript package, and the guest assets
# (agent, kernel, initramfs, built-in busybox image) @msb/vmm boots.
# Re-running it does only what is missing; turbo skips unchanged builds.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

PNPM_VERSION="10.34.9"
export TURBO_TELEMETRY_DISABLED=1 TURBO_NO_UPDATE_NOTIFIER=1
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# --- apt packages ------------------------------------------------------------
mapfile -t wanted < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' scripts/apt-packages.txt | awk '{print $1}')
missing=()
for pkg in "${wanted[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  if [[ "$(id -u)" -ne 0 ]]; then
    die "missing apt packages: ${missing[*]} — run 'sudo apt-get install -y ${missing[*]}' or run this script as root"
  fi
  log "installing apt packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "apt packages present"
fi

# --- toolchains ----------------------------------------------------------------
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
((node_major >= 20)) || die "Node.js >= 20.19 is required (found: $(node --version 2>/dev/null || echo none))"
command -v cargo >/dev/null || die "Rust (cargo) is required for @msb/native: install rustup's stable toolchain; the crate registry is not needed"

if [[ "$(pnpm --version 2>/dev/null || true)" != "$PNPM_VERSION" ]]; then
  log "installing pnpm $PNPM_VERSION"
  npm install --global --silent "pnpm@$PNPM_VERSION" >/dev/null
fi

# --- workspace -------------------------------------------------------------------
# better-sqlite3 (@msb/sdk's state database) compiles with node-gyp when its
# prebuilt binary cannot be downloaded: point it at this Node's own headers
# instead of a download from nodejs.org.
node_prefix="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
if [[ -f "$node_prefix/include/node/node.h" ]]; then
  export npm_config_nodedir="$node_prefix"
fi
log "installing workspace dependencies"
if [[ "${CI:-}" == "true" ]]; then
  pnpm install --frozen-lockfile --reporter=silent
else
  pnpm install --reporter=silent
fi

log "building native addon and packages"
pnpm exec turbo run build --output-logs=errors-only

# --- guest assets ------------------------------------------------------------------
# The guest's PID 1 (native/agent, static) and the kernel, initramfs and built-in
# busybox image @msb/vmm boots; the script skips what is already up to date.
agent="native/target/x86_64-unknown-linux-gnu/release/msb-agent"
log "building the guest agent"
# --target keeps +crt-static away from the addon's build scripts and cdylib.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release --manifest-path native/Cargo.toml \
  -p msb-agent --target x86_64-unknown-linux-gnu
log "building guest assets"
node packages/vmm/scripts/build-guest-assets.mjs --agent "$agent"
log "done"
