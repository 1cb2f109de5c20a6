//! Batched generation with a KV cache.
//!
//! Prompts of different lengths are left-padded to a common length; the
//! padding is masked out of attention and skipped by RoPE positions, so
//! each sequence computes what it would alone. Finished sequences are
//! dropped from the batch (and its cache) as they accumulate.
//! [`generate_continuous`] instead refills their rows from a queue of
//! prompts (continuous batching; see its module).
//!
//! # Threads
//!
//! A small model's decode step is made of products too small for gemm to
//! split across threads (and elementwise work that never is), so one batch
//! keeps one core busy. For such models [`generate`] splits the batch into
//! one part per thread of rayon's pool and decodes the parts side by side.
//! Since a sequence computes what it would alone, the split changes no
//! token; each part also stops as soon as its own sequences finish.
//!
//! # Shared prompts
//!
//! Sequences with the same prompt (the K samples of one context, as a
//! Math-Shepherd scorer or a sampler of n completions asks for) prefill it
//! once: the distinct prompts run, then each sequence starts from a copy of
//! its prompt's cache row and last logits.

use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::LmError;
use crate::host::{HostCache, Logits};
use crate::kv_state::{resume_point, KvState};
use crate::model::{KvCache, Llama};
use crate::sampling::{Sampler, SamplingParams};

mod continuous;
pub use continuous::generate_continuous;

/// Rows (`batch * tokens`) per forward call during prefill: bounds the
/// activations (and peak memory) for long prompts and big batches while
/// keeping matrix products large.
const PREFILL_ROWS: usize = 1024;

/// Id fed in place of a token where a sequence has none (padding); any
/// valid id works since those positions are masked.
const PAD_ID: u32 = 0;

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// It produced an EOS token (included in `tokens`).
    Eos,
    /// Its text contains a stop string (the completing token is included).
    Stop,
    /// It reached `max_new_tokens`.
    Length,
    /// It kept repeating itself (a [`crate::joint::RepeatStop`] n-gram).
    Repeat,
}

/// One sequence's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Generated tokens (not the prompt).
    pub tokens: Vec<u32>,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// The stop string found, for [`FinishReason::Stop`].
    pub stop: Option<String>,
}

/// Turns tokens into text, for stop strings.
pub trait Decode {
    /// The text of `tokens`.
    fn decode(&self, tokens: &[u32]) -> String;
}

impl<F: Fn(&[u32]) -> String> Decode for F {
    fn decode(&self, tokens: &[u32]) -> String {
        self(tokens)
    }
}

/// What [`generate`] needs besides the model.
pub struct GenerateRequest<'a> {
    /// Prompt tokens per sequence (each non-empty).
    pub prompts: &'a [Vec<u32>],
    /// Per-sequence ids that seed each sequence's RNG (e.g. item index × samples + sample).
    pub item_ids: &'a [u64],
    /// Sampling settings shared by the batch.
    pub params: &'a SamplingParams,
    /// Detokenizer for stop strings; required when `params.stop` is not empty.
    /// `Sync`, since the parts of a split batch decode on several threads.
    pub decode: Option<&'a (dyn Decode + Sync)>,
}

struct Active {
    /// Index into the request.
    index: usize,
    left_pad: usize,
    sampler: Sampler,
    tokens: Vec<u32>,
}

/// Checks a request before anything runs: every prompt non-empty, in the
/// vocabulary and short enough for `max_new_tokens` more positions.
fn check_request(model: &Llama, req: &GenerateRequest<'_>) -> Result<(), LmError> {
    let cfg = model.config();
    if req.prompts.len() != req.item_ids.len() {
        return Err(LmError::Request {
            what: format!("{} prompts but {} item ids (one per prompt)", req.prompts.len(), req.item_ids.len()),
        });
    }
    if !req.params.stop.is_empty() && req.decode.is_none() {
        return Err(LmError::Request { what: "stop strings need a decoder".into() });
    }
    let max_new = req.params.max_new_tokens;
    for (index, p) in req.prompts.iter().enumerate() {
        let what = if p.is_empty() {
            "the prompt is empty (0 tokens): every prompt needs at least one token".to_string()
        } else if let Some(&t) = p.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            format!("the prompt has token id {t}, outside the model's vocabulary of {}", cfg.vocab_size)
        } else if p.len().saturating_add(max_new) > cfg.max_position_embeddings {
            format!(
                "the prompt is {} tokens; with max_new_tokens {max_new} that exceeds the model's context \
                 (max_position_embeddings {}): shorten the prompt or lower max_new_tokens",
                p.len(),
                cfg.max_position_embeddings
            )
        } else {
            continue;
        };
        return Err(LmError::Prompt { index, what });
    }
    Ok(())
}

/// Below this many multiply-adds per decode-step product (batch × hidden ×
/// intermediate), gemm runs single-threaded (burn-flex's own threshold is
/// 192³), so splitting the batch across threads is what keeps the cores busy.
/// Above it, one batch already uses every thread and splitting would only
/// make the products smaller.
const SPLIT_BELOW: usize = 192 * 192 * 192;

/// Generates continuations for a batch of prompts.
///
/// # Errors
/// [`LmError::Prompt`] (with the prompt's index) if a prompt is empty, has a
/// token outside the vocabulary, or would exceed the model's
/// `max_position_embeddings` with `max_new_tokens` more; [`LmError::Request`]
/// if `item_ids` and `prompts` differ in length or stop strings have no
/// decoder. Nothing runs then.
pub fn generate(model: &Llama, req: &GenerateRequest<'_>) -> Result<Vec<Generation>, LmError> {
    Ok(generate_kv(model, req, None, false)?.into_iter().map(|(g, _)| g).collect())
}

/// [`generate`], continuing from kept states and/or keeping them (see
/// [`crate::kv_state`]).
///
/// `from` (one state per prompt; an empty [`KvState`] keeps nothing): each
/// sequence keeps the keys and values of the longest common prefix of its
/// state's tokens and its prompt, and only the rest of the prompt is
/// encoded. The tokens sampled are those of [`generate`] on the same prompts
/// up to float rounding. `keep`: each result carries its sequence's state
/// (prompt and generated tokens but the last, with their keys and values).
///
/// # Errors
/// As [`generate`]; also [`LmError::Request`] if `from` has not one state
/// per prompt, or a state does not fit the model (another model's cache).
pub fn generate_kv(
    model: &Llama,
    req: &GenerateRequest<'_>,
    from: Option<&[KvState]>,
    keep: bool,
) -> Result<Vec<(Generation, Option<KvState>)>, LmError> {
    check_request(model, req)?;
    if let Some(from) = from {
        if from.len() != req.prompts.len() {
            return Err(LmError::Request {
                what: format!("{} prompts but {} kept states (one per prompt)", req.prompts.len(), from.len()),
            });
        }
        if let Some(i) = from.iter().position(|s| !s.fits(model)) {
            return Err(LmError::Request {
                what: format!("kept state {i} does not fit the model's layers and heads (from another model?)"),
            });
        }
    }
    let parts = split_parts(model, req.prompts.len());
    if parts <= 1 {
        return Ok(generate_part(model, req, from, keep));
    }
    // Contiguous parts, decoded side by side; results keep the request's order.
    let size = req.prompts.len().div_ceil(parts);
    let ranges: Vec<std::ops::Range<usize>> =
        (0..req.prompts.len()).step_by(size).map(|s| s..(s + size).min(req.prompts.len())).collect();
    let outs: Vec<Vec<(Generation, Option<KvState>)>> = ranges
        .into_par_iter()
        .map(|r| {
            let r_from = r.clone();
            let part = GenerateRequest {
                prompts: &req.prompts[r.clone()],
                item_ids: &req.item_ids[r],
                params: req.params,
                decode: req.decode,
            };
            generate_part(model, &part, from.map(|f| &f[r_from.clone()]), keep)
        })
        .collect();
    Ok(outs.into_iter().flatten().collect())
}

/// How many parts to decode `batch` sequences in: one per thread for a
/// burn-path model whose decode products gemm would not split itself (see
/// the module docs), else one. A packed model's host path parallelizes its
/// own products.
pub(crate) fn split_parts(model: &Llama, batch: usize) -> usize {
    let cfg = model.config();
    let threads = rayon::current_num_threads();
    let small = batch.saturating_mul(cfg.hidden_size).saturating_mul(cfg.intermediate_size) < SPLIT_BELOW;
    if model.packed().is_some() || !small || threads < 2 || batch < 2 {
        return 1;
    }
    threads.min(batch)
}

/// [`generate`] on one batch, on the calling thread (the request is checked).
#[cfg(test)]
pub(crate) fn generate_batch(model: &Llama, req: &GenerateRequest<'_>) -> Vec<Generation> {
    generate_part(model, req, None, false).into_iter().map(|(g, _)| g).collect()
}

/// [`generate_kv`] on one batch, on the calling thread (the request is checked).
fn generate_part(
    model: &Llama,
    req: &GenerateRequest<'_>,
    from: Option<&[KvState]>,
    keep: bool,
) -> Vec<(Generation, Option<KvState>)> {
    let GenerateRequest {
        prompts,
        item_ids,
        params,
        decode,
    } = *req;
    let mut results: Vec<Option<(Generation, Option<KvState>)>> = vec![None; prompts.len()];
    if prompts.is_empty() || params.max_new_tokens == 0 {
        // Nothing runs, so nothing is kept: an empty state.
        return prompts
            .iter()
            .map(|_| {
                let g = Generation {
                    tokens: vec![],
                    finish_reason: FinishReason::Length,
                    stop: None,
                };
                (g, keep.then(KvState::default))
            })
            .collect();
    }
    let eos = params
        .eos_token_ids
        .clone()
        .unwrap_or_else(|| model.config().eos_ids());
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let capacity = max_len + params.max_new_tokens;
    let mut active: Vec<Active> = prompts
        .iter()
        .enumerate()
        .map(|(index, p)| Active {
            index,
            left_pad: max_len - p.len(),
            sampler: Sampler::new(params, item_ids[index]),
            tokens: Vec::new(),
        })
        .collect();
    let pads: Vec<usize> = active.iter().map(|s| s.left_pad).collect();
    let (mut logits, mut cache) = match from {
        // Kept states resume per sequence: no sharing.
        Some(from) => {
            let mut cache = Cache::new(model, prompts.len(), capacity);
            cache.load_states(model, from, &pads, resume_point(prompts, &pads, from));
            (prefill(model, prompts, &pads, &mut cache), cache)
        }
        None => prefill_shared(model, prompts, &pads, capacity),
    };
    let vocab = model.config().vocab_size;
    loop {
        let mut finished = Vec::new();
        for (row, seq) in active.iter_mut().enumerate() {
            let token = seq.sampler.sample(&logits[row * vocab..(row + 1) * vocab]);
            seq.tokens.push(token);
            if let Some(done) = finish(seq, token, &eos, params, decode) {
                // The last token was sampled, never fed: the cache holds the
                // prompt and the tokens before it.
                let state = keep.then(|| {
                    let stream = prompts[seq.index].iter().chain(&seq.tokens[..seq.tokens.len() - 1]).copied().collect();
                    cache.row_state(row, seq.left_pad, stream)
                });
                results[seq.index] = Some((done, state));
                finished.push(row);
            }
        }
        if !finished.is_empty() {
            let keep: Vec<usize> = (0..active.len()).filter(|r| !finished.contains(r)).collect();
            if keep.is_empty() {
                break;
            }
            if keep.len() < active.len() {
                cache.retain(&keep);
                let mut rows: Vec<Option<Active>> = active.into_iter().map(Some).collect();
                active = keep.iter().map(|&r| rows[r].take().expect("kept once")).collect();
            }
        }
        let last: Vec<u32> = active.iter().map(|s| *s.tokens.last().expect("sampled")).collect();
        let pads: Vec<usize> = active.iter().map(|s| s.left_pad).collect();
        logits = step(model, &last, &pads, &mut cache);
    }
    results.into_iter().map(|r| r.expect("every sequence finishes")).collect()
}

/// [`prefill`] into a new cache of `capacity` slots, each distinct prompt
/// once: a prompt that several sequences share (see the module docs) runs
/// for the first of them, and the others get copies of its cache row and
/// last logits.
fn prefill_shared(model: &Llama, prompts: &[Vec<u32>], pads: &[usize], capacity: usize) -> (Vec<f32>, Cache) {
    let (distinct, of) = distinct_prompts(prompts);
    let mut cache = Cache::new(model, distinct.len(), capacity);
    if distinct.len() == prompts.len() {
        return (prefill(model, prompts, pads, &mut cache), cache);
    }
    let firsts: Vec<Vec<u32>> = distinct.iter().map(|&i| prompts[i].clone()).collect();
    let first_pads: Vec<usize> = distinct.iter().map(|&i| pads[i]).collect();
    let once = prefill(model, &firsts, &first_pads, &mut cache);
    cache.retain(&of);
    let vocab = model.config().vocab_size;
    (of.iter().flat_map(|&d| once[d * vocab..(d + 1) * vocab].iter().copied()).collect(), cache)
}

/// The index of each distinct prompt's first sequence, and for every
/// sequence the position of its prompt in that list.
fn distinct_prompts(prompts: &[Vec<u32>]) -> (Vec<usize>, Vec<usize>) {
    let mut first: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
    let mut distinct = Vec::new();
    let of = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            *first.entry(p.as_slice()).or_insert_with(|| {
                distinct.push(i);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, of)
}

/// Whether `seq` is done after sampling `token`.
fn finish(
    seq: &Active,
    token: u32,
    eos: &[u32],
    params: &SamplingParams,
    decode: Option<&(dyn Decode + Sync)>,
) -> Option<Generation> {
    let (finish_reason, stop) = stop_reason(&seq.tokens, token, eos, params, decode)?;
    Some(Generation {
        tokens: seq.tokens.clone(),
        finish_reason,
        stop,
    })
}

/// Why a sequence whose tokens so far are `tokens` (the last one `token`)
/// stops now: an EOS token, a stop string in its text, or its length.
pub(crate) fn stop_reason(
    tokens: &[u32],
    token: u32,
    eos: &[u32],
    params: &SamplingParams,
    decode: Option<&(dyn Decode + Sync)>,
) -> Option<(FinishReason, Option<String>)> {
    if eos.contains(&token) {
        return Some((FinishReason::Eos, None));
    }
    if !params.stop.is_empty() {
        let decode = decode.expect("check_request: stop strings have a decoder");
        let text = decode.decode(tokens);
        if let Some(s) = params.stop.iter().find(|s| text.contains(s.as_str())) {
            return Some((FinishReason::Stop, Some(s.clone())));
        }
    }
    if tokens.len() >= params.max_new_tokens {
        return Some((FinishReason::Length, None));
    }
    None
}

fn tokens_tensor(model: &Llama, ids: Vec<u32>, batch: usize, seq: usize) -> Tensor<2, Int> {
    let ids: Vec<i32> = ids.into_iter().map(|t| t as i32).collect();
    Tensor::from_data(TensorData::new(ids, [batch, seq]), &model.device())
}

/// The KV cache of a generation: burn tensors, or host memory when the
/// model has packed weights (then [`crate::host`] runs the model).
pub(crate) enum Cache {
    Burn(KvCache),
    Host(HostCache),
}

impl Cache {
    pub(crate) fn new(model: &Llama, batch: usize, capacity: usize) -> Self {
        match model.packed() {
            Some(p) => Cache::Host(HostCache::new(&p.cfg, batch, capacity)),
            None => Cache::Burn(model.new_cache(batch, capacity)),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Cache::Burn(c) => c.len(),
            Cache::Host(c) => c.len(),
        }
    }

    pub(crate) fn retain(&mut self, rows: &[usize]) {
        match self {
            Cache::Burn(c) => c.retain(rows),
            Cache::Host(c) => c.retain(rows),
        }
    }

    /// Adds `n` empty sequences after the others.
    pub(crate) fn grow(&mut self, n: usize) {
        match self {
            Cache::Burn(c) => c.grow(n),
            Cache::Host(c) => c.grow(n),
        }
    }

    /// Moves every sequence's filled slots from `s` to `s - drop + add`
    /// (the callers shift their left paddings with them).
    pub(crate) fn rebase(&mut self, drop: usize, add: usize) {
        match self {
            Cache::Burn(c) => c.rebase(drop, add),
            Cache::Host(c) => c.rebase(drop, add),
        }
    }

    /// Copies `n` slots of sequence `src_row` of `src` (from slot `src_at`)
    /// into sequence `row` at slot `at`: a prompt prefix two host caches
    /// share. The length is the caller's to set ([`Cache::set_len`]).
    pub(crate) fn copy_slots(&mut self, row: usize, at: usize, src: &Cache, src_row: usize, src_at: usize, n: usize) {
        match (self, src) {
            (Cache::Host(c), Cache::Host(s)) => {
                let (keys, values) = s.row_kv(src_row, src_at);
                c.write_row(row, at, n, &keys, &values);
            }
            _ => panic!("only host caches share slots"),
        }
    }

    /// Sets how many slots are filled (a host cache after [`Cache::copy_slots`]).
    pub(crate) fn set_len(&mut self, len: usize) {
        match self {
            Cache::Host(c) => c.set_len(len),
            Cache::Burn(_) => panic!("only a host cache takes copied slots"),
        }
    }

    /// Runs `seq` tokens per sequence; returns last-position logits
    /// (`[batch * vocab]`) when `want_logits`.
    fn forward(&mut self, model: &Llama, ids: Vec<u32>, seq: usize, pads: &[usize], want_logits: bool) -> Vec<f32> {
        match self {
            Cache::Host(c) => {
                let packed = model.packed().expect("host cache only for packed models");
                let which = if want_logits { Logits::Last } else { Logits::None };
                packed.forward(&ids, seq, pads, c, which)
            }
            Cache::Burn(c) => {
                let tokens = tokens_tensor(model, ids, pads.len(), seq);
                let layout = model.cache_layout(pads, c, seq);
                if want_logits {
                    to_host(model.forward_last(tokens, &layout, Some(c)))
                } else {
                    let _ = model.forward_hidden(tokens, &layout, Some(c));
                    Vec::new()
                }
            }
        }
    }
}

/// Runs the prompts, left-padded by `pads` to a common length, through the
/// model in chunks; returns the last position's logits, `[batch * vocab]`
/// row-major.
pub(crate) fn prefill(model: &Llama, prompts: &[Vec<u32>], pads: &[usize], cache: &mut Cache) -> Vec<f32> {
    prefill_chunks(model, prompts, pads, cache, false)
}

/// [`prefill`] of a cache that came with slots filled ([`crate::joint`]'s
/// shared prefixes), in chunks that end at multiples of the chunk size, so
/// each position sees the keys it would see in a prefill from the start.
pub(crate) fn prefill_aligned(model: &Llama, prompts: &[Vec<u32>], pads: &[usize], cache: &mut Cache) -> Vec<f32> {
    prefill_chunks(model, prompts, pads, cache, true)
}

fn prefill_chunks(model: &Llama, prompts: &[Vec<u32>], pads: &[usize], cache: &mut Cache, aligned: bool) -> Vec<f32> {
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let chunk = prefill_chunk(prompts.len());
    loop {
        let start = cache.len();
        let len = if aligned { chunk - start % chunk } else { chunk }.min(max_len - start);
        let mut ids = Vec::with_capacity(prompts.len() * len);
        for (p, &pad) in prompts.iter().zip(pads) {
            ids.extend((start..start + len).map(|i| if i < pad { PAD_ID } else { p[i - pad] }));
        }
        let last = start + len == max_len;
        let logits = cache.forward(model, ids, len, pads, last);
        if last {
            return logits;
        }
    }
}

/// Positions per [`prefill`] chunk for `rows` prompts.
pub(crate) fn prefill_chunk(rows: usize) -> usize {
    (PREFILL_ROWS / rows).max(16)
}

/// One decoding step for every active sequence (`pads` their left padding).
pub(crate) fn step(model: &Llama, last: &[u32], pads: &[usize], cache: &mut Cache) -> Vec<f32> {
    cache.forward(model, last.to_vec(), 1, pads, true)
}

fn to_host(t: Tensor<2>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 logits")
}

/// Last-position logits of one unpadded sequence (no cache kept).
pub fn last_logits(model: &Llama, tokens: &[u32]) -> Vec<f32> {
    if let Some(p) = model.packed() {
        let mut cache = HostCache::new(&p.cfg, 1, tokens.len());
        return p.forward(tokens, tokens.len(), &[0], &mut cache, Logits::Last);
    }
    let t = tokens_tensor(model, tokens.to_vec(), 1, tokens.len());
    let layout = model.layout(&[0], tokens.len());
    to_host(model.forward_last(t, &layout, None))
}

/// `log p(tokens[i] | tokens[..i])` for `i` in `start..tokens.len()` (one
/// unpadded sequence, one forward pass), e.g. to score a completion.
///
/// # Panics
/// If `start` is 0 or past the end.
pub fn token_logprobs(model: &Llama, tokens: &[u32], start: usize) -> Vec<f32> {
    let vocab = model.config().vocab_size;
    scored_logits(model, tokens, start)
        .chunks(vocab)
        .zip(&tokens[start..])
        .map(|(row, &tok)| (row[tok as usize] as f64 - crate::score::log_sum_exp(row)) as f32)
        .collect()
}

/// The logits of the positions that predict `tokens[start..]` (one
/// unpadded sequence, one forward pass), `[(len - start) * vocab]`.
///
/// # Panics
/// If `start` is 0 or past the end.
pub(crate) fn scored_logits(model: &Llama, tokens: &[u32], start: usize) -> Vec<f32> {
    assert!(start >= 1 && start <= tokens.len(), "start must be in 1..=len");
    let n = tokens.len() - 1;
    if start == tokens.len() {
        return Vec::new();
    }
    match model.packed() {
        Some(p) => {
            let mut cache = HostCache::new(&p.cfg, 1, n);
            p.forward(&tokens[..n], n, &[0], &mut cache, Logits::From(start - 1))
        }
        None => {
            let t = tokens_tensor(model, tokens[..n].to_vec(), 1, n);
            let layout = model.layout(&[0], n);
            let hidden = model.forward_hidden(t, &layout, None);
            // Only the positions that predict a scored token go through the head.
            let hidden = hidden.narrow(1, start - 1, n - (start - 1));
            model.head(hidden).into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 logits")
        }
    }
}

#[cfg(test)]
mod shared_prompt_tests {
    use super::*;

    #[test]
    fn sequences_that_share_a_prompt_sample_what_each_would_alone() {
        let (burn, packed) = crate::test_util::burn_and_packed();
        let (a, b) = (vec![3u32, 9, 4, 1, 7], vec![5u32, 2, 8]);
        // A's samples, B's between them (shorter: left-padded), one more A.
        let prompts = vec![a.clone(), a.clone(), b.clone(), a.clone(), b.clone(), a];
        let ids: Vec<u64> = (0..prompts.len() as u64).map(|i| 100 + i).collect();
        let params = SamplingParams { temperature: 1.0, eos_token_ids: Some(vec![]), ..SamplingParams::greedy(8) };
        assert_eq!(distinct_prompts(&prompts), (vec![0, 2], vec![0, 0, 1, 0, 1, 0]));
        for model in [&burn, &packed] {
            let together = generate_batch(model, &GenerateRequest { prompts: &prompts, item_ids: &ids, params: &params, decode: None });
            for (i, g) in together.iter().enumerate() {
                let alone = generate_batch(model, &GenerateRequest { prompts: &prompts[i..=i], item_ids: &ids[i..=i], params: &params, decode: None });
                assert_eq!(g.tokens, alone[0].tokens, "sequence {i}, packed: {}", model.is_packed());
            }
            // Different item ids: the copies of one prompt sample differently.
            assert!(together[0].tokens != together[1].tokens || together[1].tokens != together[3].tokens);
        }
    }
}
