# Sourced by the scripts that run a SmolLM2 pipeline with a release build:
# sets ROOT (the repository), fetches the model if it is missing, and sets
# RETORT (the binary; built with `cargo build --release` unless given).
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ -f $ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf ]] || "$ROOT/scripts/fetch-smollm2.sh"
if [[ -z ${RETORT:-} ]]; then
    cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
    RETORT=${CARGO_TARGET_DIR:-$ROOT/target}/release/retort
fi
