//! Two sampling steps where the second prompt continues the first's text
//! (CasCoD's cascade: rationale, then the answer after prompt + rationale +
//! marker), both through the item cache like [`sample_all`].
//!
//! On a model loaded here, items go batch by batch through both steps, and
//! step 2 continues step 1's KV cache ([`retort_lm::kv_state`]): each
//! sequence keeps the keys and values of the longest common prefix of its
//! step-1 token stream and its step-2 prompt's tokens, and only the rest of
//! the step-2 prompt is encoded. The step-2 prompt is still the
//! re-tokenized text, so what the model reads is unchanged; the item cache
//! keys are the same as two [`sample_all`] calls would use. An item whose
//! step 1 came from the cache has no kept state: its step 2 encodes its
//! whole prompt (the same tokens, up to float rounding).
//!
//! Only one batch's states are held at a time (for SmolLM2-135M about 46 KB
//! per token, so a batch of 16 × 150 tokens holds ~110 MB).

use retort_engine::StageCtx;
use retort_lm::{generate_kv, GenerateRequest, Generation, KvState};

use crate::common::model::{LoadedModel, Sampler};
use crate::common::sampler::{item_id, sample_all, Item, Prompt, Sampled, StepCache};
use crate::common::sampling::Sampling;
use retort_cache::Hash;

/// What both steps share.
pub struct TwoSteps<'a> {
    /// The model and its content hash (the item keys' model).
    pub model: &'a Sampler,
    pub model_hash: Hash,
    /// Step 1's and step 2's settings.
    pub first: &'a Sampling,
    pub second: &'a Sampling,
    pub seed: u64,
    /// Sequences per forward pass.
    pub batch_size: usize,
}

/// Samples step 1 for every item, then step 2 from `next(i, step 1's
/// sample)`, the prompt that continues item `i` (same row and sample index).
/// Returns both steps' samples in item order.
pub fn sample_two_steps(
    ctx: &StageCtx<'_>,
    steps: &TwoSteps<'_>,
    items: &[Item],
    next: &dyn Fn(usize, &Sampled) -> Prompt,
) -> anyhow::Result<(Vec<Sampled>, Vec<Sampled>)> {
    let lm = match steps.model {
        Sampler::Local(lm) => lm,
        Sampler::Remote(_) => {
            // A server keeps no state we can continue: two plain passes.
            let run = |sampling: &Sampling, items: &[Item]| {
                sample_all(ctx, steps.model, steps.model_hash, sampling, steps.seed, None, items, steps.batch_size)
                    .map(|(s, _)| s)
            };
            let first = run(steps.first, items)?;
            let second: Vec<Item> = items.iter().enumerate().map(|(i, it)| follow(it, next(i, &first[i]))).collect();
            let second = run(steps.second, &second)?;
            return Ok((first, second));
        }
    };
    let caches = [
        StepCache::open(ctx.store, steps.model_hash, steps.first, steps.seed, None)?,
        StepCache::open(ctx.store, steps.model_hash, steps.second, steps.seed, None)?,
    ];
    let params = [steps.first.params(steps.seed), steps.second.params(steps.seed)];
    let total = 2 * items.len() as u64;
    let mut out: [Vec<Option<Sampled>>; 2] = [vec![None; items.len()], vec![None; items.len()]];
    let mut done = 0u64;
    // Step 2's prompt tokens, and those of them whose keys and values came
    // from step 1 (per sequence; the batch re-encodes from its smallest).
    let (mut shared, mut encoded) = (0usize, 0usize);
    let order: Vec<usize> = (0..items.len()).collect();
    for chunk in order.chunks(steps.batch_size.max(1)) {
        // Step 1: cached items, then the rest sampled with their states kept.
        let keys: Vec<Hash> = chunk.iter().map(|&i| caches[0].key(&items[i])).collect();
        let mut kept: Vec<KvState> = vec![KvState::default(); chunk.len()];
        let mut todo = Vec::new();
        for (pos, (&i, key)) in chunk.iter().zip(&keys).enumerate() {
            match caches[0].get(key)? {
                Some(s) => out[0][i] = Some(s),
                None => todo.push(pos),
            }
        }
        done += (chunk.len() - todo.len()) as u64;
        let batch: Vec<&Item> = todo.iter().map(|&pos| &items[chunk[pos]]).collect();
        let (gens, _) = run_local(lm, &params[0], &batch, None, true)?;
        for (&pos, (g, state)) in todo.iter().zip(gens) {
            let s = sampled(lm, &g, item_id(&items[chunk[pos]]))?;
            caches[0].put(&keys[pos], &s)?;
            out[0][chunk[pos]] = Some(s);
            kept[pos] = state.expect("kept");
            done += 1;
        }
        // Step 2: its prompts follow step 1's samples; new ones continue the
        // kept states.
        let second: Vec<Item> = chunk
            .iter()
            .map(|&i| follow(&items[i], next(i, out[0][i].as_ref().expect("step 1 sampled"))))
            .collect();
        let keys: Vec<Hash> = second.iter().map(|it| caches[1].key(it)).collect();
        let mut todo = Vec::new();
        for (pos, (&i, key)) in chunk.iter().zip(&keys).enumerate() {
            match caches[1].get(key)? {
                Some(s) => out[1][i] = Some(s),
                None => todo.push(pos),
            }
        }
        done += (chunk.len() - todo.len()) as u64;
        let batch: Vec<&Item> = todo.iter().map(|&pos| &second[pos]).collect();
        let from: Vec<KvState> = todo.iter().map(|&pos| std::mem::take(&mut kept[pos])).collect();
        drop(kept);
        let (gens, tokens) = run_local(lm, &params[1], &batch, Some(&from), false)?;
        for (s, p) in from.iter().zip(&tokens) {
            shared += s.tokens().iter().zip(p).take_while(|(a, b)| a == b).count().min(p.len() - 1);
            encoded += p.len();
        }
        for (&pos, (g, _)) in todo.iter().zip(gens) {
            let s = sampled(lm, &g, item_id(&second[pos]))?;
            caches[1].put(&keys[pos], &s)?;
            out[1][chunk[pos]] = Some(s);
            done += 1;
        }
        ctx.progress(done, Some(total), "samples");
    }
    if encoded > 0 {
        ctx.log(format!("step 2: {shared} of {encoded} prompt tokens continued from step 1's KV cache"));
    }
    let [first, second] = out.map(|o| o.into_iter().map(|s| s.expect("every item sampled")).collect());
    Ok((first, second))
}

/// Step 2's item for step 1's `item`: same row and sample index.
fn follow(item: &Item, prompt: Prompt) -> Item {
    Item { prompt, sample_index: item.sample_index, row: item.row }
}

/// What [`run_local`] returns: generations (with their states when kept)
/// and the prompts' tokens.
type Generated = (Vec<(Generation, Option<KvState>)>, Vec<Vec<u32>>);

/// Generates `batch` on the local model, continuing `from` and/or keeping
/// the states; errors name the item's row and sample.
fn run_local(
    lm: &LoadedModel,
    params: &retort_lm::SamplingParams,
    batch: &[&Item],
    from: Option<&[KvState]>,
    keep: bool,
) -> anyhow::Result<Generated> {
    if batch.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let tok = lm.text_tokenizer()?;
    let decode = |t: &[u32]| tok.decode(t);
    let mut prompts = Vec::with_capacity(batch.len());
    for it in batch {
        let Prompt::Text(text) = &it.prompt else {
            anyhow::bail!("row {}: chat turns reach only a remote chat endpoint", it.row);
        };
        prompts.push(tok.encode(text, false)?);
    }
    let ids: Vec<u64> = batch.iter().map(|it| item_id(it)).collect();
    let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params, decode: Some(&decode) };
    let gens = generate_kv(lm.model(), &req, from, keep).map_err(|e| match e.prompt_index() {
        Some(k) => anyhow::anyhow!("row {} (sample {}): {e}", batch[k].row, batch[k].sample_index),
        None => anyhow::Error::from(e),
    })?;
    Ok((gens, prompts))
}

/// What the item cache stores for a generation (as [`sample_all`] does).
fn sampled(lm: &LoadedModel, g: &Generation, seed: u64) -> anyhow::Result<Sampled> {
    let tok = lm.text_tokenizer()?;
    Ok(Sampled {
        response: tok.decode_skip_special(&g.tokens),
        tokens: g.tokens.len(),
        finish_reason: serde_json::to_value(g.finish_reason)?.as_str().unwrap_or("").to_string(),
        seed,
        logprobs: None,
    })
}
