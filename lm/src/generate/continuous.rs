//! Continuous batching: a sequence that stops frees its row for the next
//! prompt in the queue, so a batch keeps `slots` sequences decoding until
//! the queue runs dry, instead of finishing with a long tail of one or two
//! stragglers (static batching, [`super::generate`]).
//!
//! The batch keeps the one cache length of [`super::generate`]: every row
//! fills slots up to `len`, and a row's left padding hides the slots before
//! its sequence. A joining prompt of `L` tokens is prefilled on its own
//! (with the others joining at that step, sharing identical prompts), its
//! first token is sampled from that prefill's logits, and its keys and
//! values are written into the freed row at slots `len - L..len`: its left
//! padding is `len - L`. Keys carry their RoPE positions (the index in the
//! sequence, padding not counted), so where a sequence sits in the cache
//! does not change what it computes, and every sequence samples what it
//! would alone up to float rounding, as in [`super::generate`]'s batches
//! (the tests check it token for token on both engines; on burn's path a
//! prompt prefilled alone can round differently from one prefilled in a
//! batch, so a sampling near-tie may flip: the stages keep static batching
//! for now, see BENCHMARKS.md, "Continuous batching").
//!
//! A freed row waits until enough rows are open to be worth a prefill
//! ([`min_join`]); meanwhile the batch runs without it.
//!
//! Two moves keep that layout possible, both [`super::Cache::rebase`]: a
//! prompt longer than `len` shifts every row right, and a cache too full
//! for one more sequence's `max_new_tokens` drops the slots that are
//! padding in every row. With a capacity of the longest prompt plus twice
//! `max_new_tokens`, a drop always makes room, since the oldest running
//! sequence spans at most its prompt and `max_new_tokens` slots.

use std::collections::VecDeque;
use std::ops::Range;

use rayon::prelude::*;

use super::{check_request, finish, prefill_shared, split_parts, step, Active, Cache, FinishReason, GenerateRequest, Generation};
use crate::error::LmError;
use crate::model::Llama;
use crate::sampling::Sampler;

/// Generates continuations for every prompt of `req`, keeping up to `slots`
/// sequences in the batch, and hands each one to `on_done` (with its index
/// in the request) as it finishes; finishing order is not request order.
///
/// A sequence's tokens are those [`super::generate`] samples for it, alone
/// or in any batch. A burn-path model too small for gemm's threads splits
/// the queue into one contiguous part per thread, as [`super::generate`]
/// splits its batch, each with its share of the slots.
///
/// # Errors
/// As [`super::generate`]; nothing runs then.
pub fn generate_continuous(
    model: &Llama,
    req: &GenerateRequest<'_>,
    slots: usize,
    on_done: &(dyn Fn(usize, Generation) + Sync),
) -> Result<(), LmError> {
    let slots = slots.max(1);
    joining_at(model, req, slots, min_join(model, slots), on_done)
}

/// [`generate_continuous`] with freed rows taking prompts once `min_join`
/// are open.
fn joining_at(
    model: &Llama,
    req: &GenerateRequest<'_>,
    slots: usize,
    min_join: usize,
    on_done: &(dyn Fn(usize, Generation) + Sync),
) -> Result<(), LmError> {
    check_request(model, req)?;
    let n = req.prompts.len();
    if req.params.max_new_tokens == 0 {
        for i in 0..n {
            on_done(i, Generation { tokens: vec![], finish_reason: FinishReason::Length, stop: None });
        }
        return Ok(());
    }
    let parts = split_parts(model, slots.min(n));
    if parts <= 1 {
        run(model, req, 0..n, slots, min_join, on_done);
        return Ok(());
    }
    let size = n.div_ceil(parts);
    let ranges: Vec<Range<usize>> = (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect();
    let per_part = slots.div_ceil(parts);
    ranges.into_par_iter().for_each(|r| run(model, req, r, per_part, min_join.min(per_part), on_done));
    Ok(())
}

/// The rows of one continuously refilled batch and the queue that feeds it.
struct Batch<'a, 'r> {
    model: &'a Llama,
    req: &'a GenerateRequest<'r>,
    eos: Vec<u32>,
    queue: VecDeque<usize>,
    /// One entry per cache row; `None` for a row freed at this step.
    rows: Vec<Option<Active>>,
    cache: Cache,
    capacity: usize,
    /// Fewest open rows worth a prefill (module docs).
    min_join: usize,
}

/// Decodes the prompts at `range` of `req`, `slots` at a time, on the
/// calling thread; freed rows take prompts once `min_join` are open.
fn run(
    model: &Llama,
    req: &GenerateRequest<'_>,
    range: Range<usize>,
    slots: usize,
    min_join: usize,
    on_done: &(dyn Fn(usize, Generation) + Sync),
) {
    if range.is_empty() {
        return;
    }
    let params = req.params;
    let longest = range.clone().map(|i| req.prompts[i].len()).max().unwrap_or(0);
    let capacity = longest + 2 * params.max_new_tokens;
    let eos = params.eos_token_ids.clone().unwrap_or_else(|| model.config().eos_ids());
    let mut queue: VecDeque<usize> = range.collect();
    // The first wave prefills straight into the batch's cache.
    let first: Vec<usize> = queue.drain(..slots.min(queue.len())).collect();
    let prompts: Vec<Vec<u32>> = first.iter().map(|&i| req.prompts[i].clone()).collect();
    let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let pads: Vec<usize> = prompts.iter().map(|p| max_len - p.len()).collect();
    let (mut logits, cache) = prefill_shared(model, &prompts, &pads, capacity);
    let rows = first
        .iter()
        .zip(&pads)
        .map(|(&index, &left_pad)| {
            Some(Active { index, left_pad, sampler: Sampler::new(params, req.item_ids[index]), tokens: Vec::new() })
        })
        .collect();
    let mut batch = Batch { model, req, eos, queue, rows, cache, capacity, min_join };
    let vocab = model.config().vocab_size;
    loop {
        let mut free = Vec::new();
        for (row, slot) in batch.rows.iter_mut().enumerate() {
            let seq = slot.as_mut().expect("every row runs at a step");
            let token = seq.sampler.sample(&logits[row * vocab..(row + 1) * vocab]);
            seq.tokens.push(token);
            if let Some(done) = finish(seq, token, &batch.eos, params, req.decode) {
                on_done(seq.index, done);
                *slot = None;
                free.push(row);
            }
        }
        // Open rows: those freed now and those dropped at earlier steps.
        let mut open = slots - batch.rows.iter().flatten().count();
        while !batch.queue.is_empty() && open >= batch.min_join.min(batch.queue.len()) {
            open -= batch.admit(open, &mut free, on_done);
        }
        if !free.is_empty() {
            let keep: Vec<usize> = (0..batch.rows.len()).filter(|&r| batch.rows[r].is_some()).collect();
            if keep.is_empty() && batch.queue.is_empty() {
                return;
            }
            batch.cache.retain(&keep);
            batch.rows = keep.iter().map(|&r| batch.rows[r].take()).collect();
        }
        let (last, pads): (Vec<u32>, Vec<usize>) = batch
            .rows
            .iter()
            .flatten()
            .map(|s| (*s.tokens.last().expect("sampled"), s.left_pad))
            .unzip();
        logits = step(model, &last, &pads, &mut batch.cache);
    }
}

/// Fewest open rows worth a joining prefill: one on burn's path, where a
/// step's cost has a part that does not grow with the batch; every row on
/// the host engine, whose prefill of a few short prompts dequantizes every
/// weight for few rows (40-token prompts prefill at 224 tokens/s alone, 730
/// sixteen at a time) while its decode costs the same per row at batch 4 as
/// at 16, so refilling row by row only loses there (see BENCHMARKS.md,
/// "Continuous batching"). `RETORT_MIN_JOIN` overrides it, for benchmarks.
fn min_join(model: &Llama, slots: usize) -> usize {
    let default = if model.is_packed() { slots } else { 1 };
    std::env::var("RETORT_MIN_JOIN").ok().and_then(|v| v.parse().ok()).unwrap_or(default).clamp(1, slots)
}

impl Batch<'_, '_> {
    /// Moves up to `open` prompts from the queue into the batch: prefills
    /// them together, samples each one's first token, and places those that
    /// go on into the `free` rows, adding rows when there are too few.
    /// Returns how many were placed (one that stops at once takes no row).
    fn admit(&mut self, open: usize, free: &mut Vec<usize>, on_done: &(dyn Fn(usize, Generation) + Sync)) -> usize {
        let (req, params) = (self.req, self.req.params);
        let joining: Vec<usize> = self.queue.drain(..open.min(self.queue.len())).collect();
        let prompts: Vec<Vec<u32>> = joining.iter().map(|&i| req.prompts[i].clone()).collect();
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let (logits, prefilled) = prefill_shared(self.model, &prompts, &pads, longest);
        let vocab = self.model.config().vocab_size;
        let mut going = Vec::new();
        for (j, &index) in joining.iter().enumerate() {
            let mut seq = Active { index, left_pad: 0, sampler: Sampler::new(params, req.item_ids[index]), tokens: Vec::new() };
            let token = seq.sampler.sample(&logits[j * vocab..(j + 1) * vocab]);
            seq.tokens.push(token);
            match finish(&seq, token, &self.eos, params, req.decode) {
                Some(done) => on_done(index, done),
                None => going.push((j, seq)),
            }
        }
        if going.len() > free.len() {
            let added = going.len() - free.len();
            self.cache.grow(added);
            free.extend(self.rows.len()..self.rows.len() + added);
            self.rows.resize_with(self.rows.len() + added, || None);
        }
        self.make_room(longest);
        let placed = going.len();
        for (j, mut seq) in going {
            let prompt = &prompts[j];
            seq.left_pad = self.cache.len() - prompt.len();
            let row = free.pop().expect("a free row per joining prompt");
            self.cache.place_state(row, seq.left_pad, &prefilled.row_state(j, pads[j], prompt.clone()));
            self.rows[row] = Some(seq);
        }
        placed
    }

    /// Makes the cache hold a prompt of `longest` tokens ending at its
    /// length, with room for `max_new_tokens` more: shifts every row right
    /// when the cache is shorter than the prompt, or drops slots that are
    /// padding in every running row when it is too full (module docs).
    fn make_room(&mut self, longest: usize) {
        let (len, max_new) = (self.cache.len(), self.req.params.max_new_tokens);
        let (drop, add) = if len < longest {
            (0, longest - len)
        } else if len + max_new > self.capacity {
            let min_pad = self.rows.iter().flatten().map(|s| s.left_pad).min().unwrap_or(len);
            (min_pad.min(len - longest), 0)
        } else {
            return;
        };
        self.cache.rebase(drop, add);
        for seq in self.rows.iter_mut().flatten() {
            seq.left_pad = seq.left_pad + add - drop;
        }
    }
}

#[cfg(test)]
mod tests;
