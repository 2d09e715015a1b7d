# shellcheck shell=bash
# Shell helpers shared by scripts/setup and scripts/run. Source it; do not run it.
#
# It finds the repository root, the machine-wide tool cache and the toolchains,
# and holds the defaults of the settings the scripts need. It changes nothing on
# the machine by itself.

# The repository root, whatever the caller's working directory.
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Installed tools are cached machine-wide (not in the work tree), so that a second
# run, another clone of the repo, and CI in a fresh clone all reuse them.
TOOLS="${STAGEPASS_TOOLS:-/root/.cache/stagepass}"

# Toolchains of this machine kind live outside the PATH of non-login shells
# (make, CI): add them when present. Each is put first, so $TOOLS/bin wins.
for dir in "${CARGO_HOME:-$HOME/.cargo}/bin" /usr/local/go/bin "$TOOLS/bin"; do
  case ":$PATH:" in
    *":$dir:"*) ;;
    *) [ -d "$dir" ] && PATH="$dir:$PATH" ;;
  esac
done
export PATH

if [ -t 1 ]; then
  _bold=$'\033[1m' _red=$'\033[31m' _dim=$'\033[2m' _reset=$'\033[0m'
else
  _bold='' _red='' _dim='' _reset=''
fi

say()  { printf '%s==>%s %s\n' "$_bold" "$_reset" "$*"; }
note() { printf '    %s%s%s\n' "$_dim" "$*" "$_reset"; }
die()  { printf '%serror:%s %s\n' "$_red$_bold" "$_reset" "$*" >&2; exit 1; }

# Defaults of the app's settings that the scripts also use. The app has the same
# defaults; the scripts export them so the app and the services agree.
stagepass_env_defaults() {
  export DATABASE_URL="${DATABASE_URL:-postgres://stagepass:stagepass@localhost:5432/stagepass}"
  export PUBLIC_URL="${PUBLIC_URL:-http://localhost:8080}"
  export LIVEKIT_URL="${LIVEKIT_URL:-http://localhost:7880}"
  export LIVEKIT_API_KEY="${LIVEKIT_API_KEY:-devkey}"
  export LIVEKIT_API_SECRET="${LIVEKIT_API_SECRET:-secret}"
  export S3_ENDPOINT="${S3_ENDPOINT:-http://localhost:8014}"
  export S3_BUCKET="${S3_BUCKET:-stagepass}"
  export S3_ACCESS_KEY_ID="${S3_ACCESS_KEY_ID:-stagepass}"
  export S3_SECRET_ACCESS_KEY="${S3_SECRET_ACCESS_KEY:-stagepass-dev-secret}"
  # Locally, webhook receivers usually run on this machine too.
  export WEBHOOKS_ALLOW_PRIVATE_ADDRESSES="${WEBHOOKS_ALLOW_PRIVATE_ADDRESSES:-true}"
}

# Loads .env from the repo root (if present) into the environment.
load_dotenv() {
  if [ -f "$REPO_ROOT/.env" ]; then
    set -a
    # shellcheck disable=SC1091
    . "$REPO_ROOT/.env"
    set +a
    TOOLS="${STAGEPASS_TOOLS:-$TOOLS}"
  fi
}

# True when anything answers HTTP on the URL (any status code counts).
http_answers() {
  curl --silent --output /dev/null --max-time 2 "$1"
}

# url_host URL / url_port URL DEFAULT_PORT: the parts of an http(s) URL.
url_host() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  rest="${rest##*@}"
  case "$rest" in
    \[*\]*) rest="${rest#[}"; echo "${rest%%]*}" ;;
    *) echo "${rest%%:*}" ;;
  esac
}
url_port() {
  local rest="${1#*://}"
  rest="${rest%%/*}"
  rest="${rest##*@}"
  rest="${rest##*]}"
  case "$rest" in
    *:*) echo "${rest##*:}" ;;
    *) echo "$2" ;;
  esac
}
is_local_host() {
  case "$1" in
    localhost | 127.* | ::1) return 0 ;;
    *) return 1 ;;
  esac
}
