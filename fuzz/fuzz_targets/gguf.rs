#![no_main]

mod limit;

#[global_allocator]
static ALLOC: limit::Limit = limit::Limit;

libfuzzer_sys::fuzz_target!(|data: &[u8]| retort_lm::fuzzing::fuzz_gguf(data));
