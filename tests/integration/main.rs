//! End-to-end tests of the `retort` binary (one test binary, as nextest and
//! ripgrep do). Each test builds a pipeline in a fresh temp dir and drives the
//! CLI contract of DESIGN.md.

mod util;
mod llama;

mod cache_semantics;
mod cascod;
mod devices;
mod command_stage;
mod empty_inputs;
mod errors;
mod execution;
mod exports;
mod fingerprints;
mod gguf_export;
mod inspect;
mod judge;
mod interop;
mod montessori;
mod onpolicy;
mod openai;
mod params;
mod quickstart;
mod report;
mod remote_cache;
mod schema;
mod skillfactory;
mod slurm;
mod sphere;
mod transformers_interop;
