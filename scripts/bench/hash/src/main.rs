//! `retort-bench-hash FILE`: hashes FILE with `retort_cache::hash_file` (the
//! function the engine uses for external inputs and outputs) and prints the
//! hex digest, like `b3sum --no-names`. Timed from outside by
//! scripts/bench-engine.sh against `b3sum --num-threads 1`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: retort-bench-hash FILE");
        return ExitCode::from(2);
    };
    match retort_cache::hash_file(&path) {
        Ok(h) => {
            println!("{}", h.to_hex());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("retort-bench-hash: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
