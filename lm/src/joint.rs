//! Several contexts, one continuation: each item is read under `K`
//! contexts (prompts) at once, and every step appends the same token to
//! all `K`.
//!
//! At each step the caller's [`Mix`] sees the next-token log-probs under
//! every context and says which logits to sample from. Hinted Decoding
//! (METHODS §4.3) is `K = 2`: a stream whose prompt holds a reference
//! solution and a stream with the question alone, mixed by their entropy;
//! contrastive or guided decoding are other mixes of the same loop.
//!
//! Each context has a model (one model may serve several); contexts of one
//! model share a KV cache, batched over items and contexts, so a step is one
//! forward call per distinct model.
//! Items are independent (own RNG from `(seed, item id)`, own padding), so
//! the result does not depend on the batch; a batch is split across rayon's
//! threads for small models as in [`crate::generate`].

use rayon::prelude::*;

use crate::error::LmError;
use crate::generate::{prefill_aligned, split_parts, step, stop_reason, Cache, Decode, FinishReason};
use crate::model::Llama;
use crate::sampling::{Sampler, SamplingParams};
use crate::score::{log_softmax, TokenStat};

/// Stop a continuation that keeps repeating itself: an `n`-token n-gram
/// that occurs `times` times or more, checked every `every` tokens (the
/// Hinted Decoding reference: 30, 5, 100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatStop {
    /// n-gram length in tokens.
    pub n: usize,
    /// Occurrences that stop the stream.
    pub times: usize,
    /// Check every this many tokens.
    pub every: usize,
}

impl RepeatStop {
    /// Whether `tokens` holds an `n`-gram `times` times or more.
    pub fn repeats(&self, tokens: &[u32]) -> bool {
        if self.n == 0 || tokens.len() < self.n * self.times.max(1) {
            return false;
        }
        let mut counts: std::collections::HashMap<&[u32], usize> = std::collections::HashMap::new();
        for w in tokens.windows(self.n) {
            let c = counts.entry(w).or_default();
            *c += 1;
            if *c >= self.times {
                return true;
            }
        }
        false
    }
}

/// How one step's token distribution is made from the contexts' ones.
pub trait Mix: Sync {
    /// What the mix keeps per item (e.g. whether it has switched streams).
    type State: Send;

    /// The state of item `item` before its first token.
    fn start(&self, item: usize) -> Self::State;

    /// Writes into `out` the logits to sample the next token from, given
    /// the continuation so far and each context's next-token log-probs
    /// (`logp[k]`, normalized, temperature 1; `entropy[k]` their entropy).
    fn mix(&self, state: &mut Self::State, tokens: &[u32], logp: &[&[f32]], entropy: &[f32], out: &mut [f32]);
}

/// What [`generate_joint`] needs.
pub struct JointRequest<'a> {
    /// The model of each context (`K` of them; the same model may repeat).
    /// They must share a vocabulary.
    pub models: &'a [&'a Llama],
    /// Per item, its `K` context prompts (each non-empty).
    pub contexts: &'a [Vec<Vec<u32>>],
    /// Per item, the id that seeds its RNG.
    pub item_ids: &'a [u64],
    /// Sampling and stopping, shared by the batch (EOS ids default to the
    /// first model's).
    pub params: &'a SamplingParams,
    /// Detokenizer for stop strings.
    pub decode: Option<&'a (dyn Decode + Sync)>,
    /// Stop on a repeated n-gram.
    pub repeat: Option<RepeatStop>,
}

/// One item's continuation.
#[derive(Debug, Clone)]
pub struct JointGeneration<S> {
    /// The generated tokens.
    pub tokens: Vec<u32>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
    /// The stop string found, for [`FinishReason::Stop`].
    pub stop: Option<String>,
    /// Per generated token, its stat under each context (`stats[t][k]`).
    pub stats: Vec<Vec<TokenStat>>,
    /// The mix's state at the end.
    pub state: S,
}

/// Checks a request before anything runs.
fn check(req: &JointRequest<'_>) -> Result<(), LmError> {
    let bad = |what: String| Err(LmError::Request { what });
    let k = req.models.len();
    if k == 0 {
        return bad("joint decoding needs at least one context model".into());
    }
    let vocab = req.models[0].config().vocab_size;
    if let Some((i, m)) = req.models.iter().enumerate().find(|(_, m)| m.config().vocab_size != vocab) {
        return bad(format!(
            "the models of context 0 and context {i} have different vocabularies ({vocab} and {} tokens): \
             streams that share one continuation need one tokenizer",
            m.config().vocab_size
        ));
    }
    if req.contexts.len() != req.item_ids.len() {
        return bad(format!("{} items but {} item ids (one per item)", req.contexts.len(), req.item_ids.len()));
    }
    if !req.params.stop.is_empty() && req.decode.is_none() {
        return bad("stop strings need a decoder".into());
    }
    let max_new = req.params.max_new_tokens;
    for (index, ctxs) in req.contexts.iter().enumerate() {
        if ctxs.len() != k {
            return Err(LmError::Prompt { index, what: format!("{} contexts for {k} models (one per model)", ctxs.len()) });
        }
        for (c, (p, m)) in ctxs.iter().zip(req.models).enumerate() {
            let max_pos = m.config().max_position_embeddings;
            let what = if p.is_empty() {
                format!("context {c} is empty (0 tokens): every context needs at least one token")
            } else if let Some(&t) = p.iter().find(|&&t| t as usize >= vocab) {
                format!("context {c} has token id {t}, outside the vocabulary of {vocab}")
            } else if p.len().saturating_add(max_new) > max_pos {
                format!(
                    "context {c} is {} tokens; with max_new_tokens {max_new} that exceeds the model's context \
                     (max_position_embeddings {max_pos}): shorten it or lower max_new_tokens",
                    p.len()
                )
            } else {
                continue;
            };
            return Err(LmError::Prompt { index, what });
        }
    }
    Ok(())
}

/// Decodes one continuation per item under all of its contexts, each token
/// sampled from `mix`'s logits.
///
/// # Errors
/// [`LmError::Request`] if there is no model, the models' vocabularies
/// differ, or the ids do not match the items; [`LmError::Prompt`] (with
/// the item's index) for an empty, out-of-vocabulary or too long context.
/// Nothing runs then.
pub fn generate_joint<M: Mix>(req: &JointRequest<'_>, mix: &M) -> Result<Vec<JointGeneration<M::State>>, LmError> {
    check(req)?;
    let n = req.contexts.len();
    let parts = split_parts(req.models[0], n);
    if parts <= 1 {
        return Ok(joint_batch(req, mix, 0..n));
    }
    let size = n.div_ceil(parts);
    let ranges: Vec<std::ops::Range<usize>> = (0..n).step_by(size).map(|s| s..(s + size).min(n)).collect();
    let outs: Vec<Vec<JointGeneration<M::State>>> = ranges.into_par_iter().map(|r| joint_batch(req, mix, r)).collect();
    Ok(outs.into_iter().flatten().collect())
}

struct Active<S> {
    /// Index into the request.
    item: usize,
    sampler: Sampler,
    tokens: Vec<u32>,
    stats: Vec<Vec<TokenStat>>,
    state: S,
}

/// The items `range` of a checked request, as one batch on this thread.
fn joint_batch<M: Mix>(req: &JointRequest<'_>, mix: &M, range: std::ops::Range<usize>) -> Vec<JointGeneration<M::State>> {
    let params = req.params;
    let k = req.models.len();
    let first = range.start;
    let items: Vec<usize> = range.collect();
    let mut results: Vec<Option<JointGeneration<M::State>>> = (0..items.len()).map(|_| None).collect();
    let mut active: Vec<Active<M::State>> = items
        .iter()
        .map(|&item| Active {
            item,
            sampler: Sampler::new(params, req.item_ids[item]),
            tokens: Vec::new(),
            stats: Vec::new(),
            state: mix.start(item),
        })
        .collect();
    if items.is_empty() || params.max_new_tokens == 0 {
        return active
            .into_iter()
            .map(|a| JointGeneration { tokens: vec![], finish_reason: FinishReason::Length, stop: None, stats: vec![], state: a.state })
            .collect();
    }
    let eos = params.eos_token_ids.clone().unwrap_or_else(|| req.models[0].config().eos_ids());
    let vocab = req.models[0].config().vocab_size;
    let mut streams = Streams::new(req, &items);
    // Each row's scratch: its contexts' log-probs and the mixed logits.
    let mut scratch: Vec<(Vec<Vec<f32>>, Vec<f32>)> =
        (0..items.len()).map(|_| ((0..k).map(|_| Vec::with_capacity(vocab)).collect(), vec![0f32; vocab])).collect();
    loop {
        // Rows are independent (own sampler, state and scratch), so they
        // mix and sample side by side: two log-softmaxes over the
        // vocabulary per row were a quarter of a batch-16 step on one thread.
        let logits: Vec<Vec<&[f32]>> = (0..active.len()).map(|row| (0..k).map(|c| streams.logits(row, c, vocab)).collect()).collect();
        let reasons: Vec<Option<(FinishReason, Option<String>)>> = active
            .par_iter_mut()
            .zip(scratch.par_iter_mut())
            .zip(logits.par_iter())
            .map(|((seq, (logp, mixed)), logits)| {
                let entropy: Vec<f32> = logp.iter_mut().zip(logits).map(|(lp, l)| log_softmax(l, lp)).collect();
                let views: Vec<&[f32]> = logp.iter().map(Vec::as_slice).collect();
                mix.mix(&mut seq.state, &seq.tokens, &views, &entropy, mixed);
                let token = seq.sampler.sample(mixed);
                seq.stats.push((0..k).map(|c| TokenStat { logprob: logp[c][token as usize], entropy: entropy[c] }).collect());
                seq.tokens.push(token);
                stop_reason(&seq.tokens, token, &eos, params, req.decode).or_else(|| {
                    let r = req.repeat?;
                    (r.every > 0 && seq.tokens.len() % r.every == 0 && r.repeats(&seq.tokens)).then_some((FinishReason::Repeat, None))
                })
            })
            .collect();
        let finished: Vec<(usize, FinishReason, Option<String>)> =
            reasons.into_iter().enumerate().filter_map(|(row, r)| r.map(|(f, s)| (row, f, s))).collect();
        if !finished.is_empty() {
            let done: Vec<usize> = finished.iter().map(|f| f.0).collect();
            let keep: Vec<usize> = (0..active.len()).filter(|r| !done.contains(r)).collect();
            let mut rows: Vec<Option<Active<M::State>>> = active.into_iter().map(Some).collect();
            for (row, finish_reason, stop) in finished {
                let a = rows[row].take().expect("finished once");
                results[a.item - first] = Some(JointGeneration { tokens: a.tokens, finish_reason, stop, stats: a.stats, state: a.state });
            }
            if keep.is_empty() {
                break;
            }
            streams.retain(&keep);
            scratch.truncate(keep.len());
            active = keep.iter().map(|&r| rows[r].take().expect("kept once")).collect();
        }
        let last: Vec<u32> = active.iter().map(|s| *s.tokens.last().expect("sampled")).collect();
        streams.step(&last);
    }
    results.into_iter().map(|r| r.expect("every item finishes")).collect()
}

/// The contexts' KV caches. Contexts that use the same model share one
/// cache, holding `K'` rows per item (item-major), so a step is one forward
/// call per distinct model: the weights are read once for all its streams
/// (except where the packed engine would leave its one-pass kernel).
struct Streams<'a> {
    groups: Vec<Group<'a>>,
    /// Per context: its group and its place among the group's contexts.
    at: Vec<(usize, usize)>,
}

struct Group<'a> {
    model: &'a Llama,
    /// The contexts whose rows this cache holds, in row order within an item.
    contexts: Vec<usize>,
    cache: Cache,
    pads: Vec<usize>,
    /// Last-position logits of every row, `[rows * vocab]`.
    logits: Vec<f32>,
}

impl<'a> Streams<'a> {
    /// Prefills every context of `items`.
    fn new(req: &JointRequest<'a>, items: &[usize]) -> Self {
        // Which contexts each distinct model serves, in first-use order.
        let mut members: Vec<(&'a Llama, Vec<usize>)> = Vec::new();
        for (c, &model) in req.models.iter().enumerate() {
            match members.iter_mut().find(|(m, _)| std::ptr::eq(*m, model)) {
                Some((_, cs)) => cs.push(c),
                None => members.push((model, vec![c])),
            }
        }
        // The packed engine multiplies up to `row_kernel_rows()` activation
        // rows with its block kernels and takes a slower path beyond: there, one
        // cache per context keeps each call within one pass (measured in
        // BENCHMARKS.md, "Hinted Decoding against plain decoding").
        let members: Vec<(&'a Llama, Vec<usize>)> = members
            .into_iter()
            .flat_map(|(m, cs)| {
                if m.packed().is_some() && items.len() * cs.len() > crate::qmatmul::row_kernel_rows() {
                    cs.into_iter().map(|c| (m, vec![c])).collect()
                } else {
                    vec![(m, cs)]
                }
            })
            .collect();
        let mut at = vec![(0, 0); req.models.len()];
        for (g, (_, cs)) in members.iter().enumerate() {
            for (j, &c) in cs.iter().enumerate() {
                at[c] = (g, j);
            }
        }
        let mut groups: Vec<Group<'a>> = Vec::with_capacity(members.len());
        for (model, contexts) in members {
            let prompts: Vec<Vec<u32>> =
                items.iter().flat_map(|&i| contexts.iter().map(move |&c| req.contexts[i][c].clone())).collect();
            let max_len = prompts.iter().map(Vec::len).max().unwrap_or(0);
            let pads: Vec<usize> = prompts.iter().map(|p| max_len - p.len()).collect();
            let mut cache = Cache::new(model, prompts.len(), max_len + req.params.max_new_tokens);
            if contexts.len() == 1 {
                share_prefixes(req, items, &groups, model, &prompts, &pads, &mut cache);
            }
            let logits = prefill_aligned(model, &prompts, &pads, &mut cache);
            groups.push(Group { model, contexts, cache, pads, logits });
        }
        Streams { groups, at }
    }

    /// Active row `row`'s next-token logits under context `c`.
    fn logits(&self, row: usize, c: usize, vocab: usize) -> &[f32] {
        let (g, j) = self.at[c];
        let g = &self.groups[g];
        let r = row * g.contexts.len() + j;
        &g.logits[r * vocab..(r + 1) * vocab]
    }

    /// Keeps the active rows `keep` (in this order).
    fn retain(&mut self, keep: &[usize]) {
        for g in &mut self.groups {
            let n = g.contexts.len();
            let rows: Vec<usize> = keep.iter().flat_map(|&r| (0..n).map(move |j| r * n + j)).collect();
            g.cache.retain(&rows);
            g.pads = rows.iter().map(|&r| g.pads[r]).collect();
        }
    }

    /// Feeds each active row's last token to all its contexts.
    fn step(&mut self, last: &[u32]) {
        for g in &mut self.groups {
            let n = g.contexts.len();
            let ids: Vec<u32> = last.iter().flat_map(|&t| std::iter::repeat_n(t, n)).collect();
            g.logits = step(g.model, &ids, &g.pads, &mut g.cache);
        }
    }
}

/// Before a one-context group of `model` is prefilled: the prefix each
/// row's prompt shares with the same item's prompt in an earlier
/// one-context group of that model (Hinted Decoding's plain prompt is its
/// hinted prompt up to the hint) is copied from that group's cache, and the
/// cache's length is set past the slots every row then holds, so the
/// prefill computes only what is left.
///
/// The copies are the keys and values the prefill would compute: a
/// position's keys and values depend on the tokens before it alone, the
/// weight products give each row the same bits whatever shares them, and
/// attention reads keys from a row's first unpadded slot on. What is left
/// is prefilled in chunks that end where a whole prefill's do, from a start
/// where its products take the kernels a whole prefill's take
/// ([`same_attention_kernels`]), so the bits are the same (a joint test
/// pins this).
fn share_prefixes(
    req: &JointRequest<'_>,
    items: &[usize],
    earlier: &[Group<'_>],
    model: &Llama,
    prompts: &[Vec<u32>],
    pads: &[usize],
    cache: &mut Cache,
) {
    if model.packed().is_none() {
        return; // only host caches (the packed engine's) share slots
    }
    let Some(src) = earlier.iter().find(|g| std::ptr::eq(g.model, model) && g.contexts.len() == 1) else {
        return;
    };
    let max_len = pads[0] + prompts[0].len();
    let theirs = |r: usize| &req.contexts[items[r]][src.contexts[0]];
    let shared: Vec<usize> =
        prompts.iter().enumerate().map(|(r, p)| p.iter().zip(theirs(r)).take_while(|(a, b)| a == b).count()).collect();
    let rows = prompts.len();
    let chunk = crate::generate::prefill_chunk(rows);
    let want = (0..rows).map(|r| pads[r] + shared[r]).min().unwrap_or(0).min(max_len.saturating_sub(1));
    let (chunk_start, chunk_end) = (want / chunk * chunk, (want / chunk * chunk + chunk).min(max_len));
    // The latest start from which what is left runs the kernels a whole
    // prefill runs for the same positions (from `chunk_start` it trivially does).
    let whole = chunk_end - chunk_start;
    let start = (chunk_start + 1..=want)
        .rev()
        .find(|&s| {
            let left = chunk_end - s;
            (rows * left > crate::qmatmul::row_kernel_rows()) == (rows * whole > crate::qmatmul::row_kernel_rows())
                && pads.iter().all(|&pad| pad >= s || same_attention_kernels(left, chunk_end - pad.max(chunk_start), chunk_end - pad))
        })
        .unwrap_or(chunk_start);
    if start == 0 {
        return;
    }
    for (r, &pad) in pads.iter().enumerate() {
        let n = start.saturating_sub(pad);
        if n > 0 {
            cache.copy_slots(r, pad, &src.cache, r, src.pads[r], n);
        }
        #[cfg(test)]
        tests::COPIED_SLOTS.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    cache.set_len(start);
}

/// Whether gemm (gemm-common 0.19) multiplies a prefill chunk's attention
/// (`crate::host`'s `prefill_head`) with the same kernels for `m` as for
/// `whole` queries of a row over `keys` visible keys: its scores product
/// takes a small-output path for `m · keys ≤ 256`, one-row products a
/// gemv, and its weighted sum blocks the inner dimension differently past
/// 64 queries; each changes the last bits.
pub(crate) fn same_attention_kernels(m: usize, whole: usize, keys: usize) -> bool {
    let small_output = |q: usize| q * keys <= 256;
    let one_row = |q: usize| q <= 1;
    let few_rows = |q: usize| q <= 64;
    small_output(m) == small_output(whole) && one_row(m) == one_row(whole) && few_rows(m) == few_rows(whole)
}

#[cfg(test)]
#[path = "joint_tests.rs"]
mod tests;
