//! Sampling many (prompt, sample) items through a model, with the item
//! cache in front: shared by `generate` and `evaluate`.
//!
//! An item's key covers the model's content hash, the sampling parameters,
//! the exact prompt text, the sample index and the seed, so adding prompts
//! samples only the new ones and a killed run resumes where it stopped.
//! Each item's RNG is seeded from (seed, item id), and the item id is derived
//! from the prompt text and sample index, not the item's position: a sample
//! does not depend on which other prompts share its batch or the file.

use retort_cache::{fingerprint, Hash, Store};
use retort_engine::StageCtx;
use retort_lm::chat::ChatMessage;
use retort_lm::{generate, GenerateRequest};
use serde::{Deserialize, Serialize};

use crate::common::model::{LoadedModel, Sampler};
use crate::common::sampling::Sampling;
use crate::openai;

/// What a model is asked: text, or chat turns for a remote chat endpoint
/// (whose server applies its own template).
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// The exact text (a local model's chat template already applied).
    Text(String),
    /// Turns for `/chat/completions`.
    Chat(Vec<ChatMessage>),
}

impl Prompt {
    /// The text the item key holds: the prompt, or the turns as JSON.
    fn key_text(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Prompt::Text(t) => t.into(),
            Prompt::Chat(turns) => serde_json::to_string(turns).expect("chat turns serialize").into(),
        }
    }
}

/// One thing to sample.
pub struct Item {
    /// The prompt (already templated).
    pub prompt: Prompt,
    /// Which sample of this prompt.
    pub sample_index: usize,
    /// The input row the prompt came from, for errors.
    pub row: usize,
}

/// What sampling an item produced (cached per item).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sampled {
    /// Generated text (special tokens removed).
    pub response: String,
    /// Generated token count.
    pub tokens: usize,
    /// `eos`, `stop` or `length`.
    pub finish_reason: String,
    /// The item's RNG seed (for a remote model: the seed sent to the server).
    pub seed: u64,
}

/// What an item's cache key covers. The sampling settings enter as the
/// stages' own [`Sampling::hashed`], not the runtime's struct, so renaming a
/// runtime field does not invalidate every cached sample. `model` is the
/// content hash of local weights, or a remote model's identity (its name,
/// revision, endpoint and extra request fields: never its URL or key).
#[derive(Serialize)]
struct ItemKey<'a> {
    model: Hash,
    sampling: &'a serde_json::Value,
    seed: u64,
    prompt: &'a str,
    sample_index: usize,
    cache_key: u32,
}

/// Stores one sampled item; returns how many items are done in all.
pub type Put<'a> = dyn FnMut(usize, Sampled) -> anyhow::Result<u64> + 'a;

/// Bump when what a cached item means changes.
/// 2: inference numerics changed (see `generate`'s kind version).
/// 3: the key holds the stages' sampling settings (f64) instead of lm's
///    `SamplingParams`.
const ITEM_CACHE_VERSION: u32 = 3;

/// Samples every item, reusing cached ones; reports progress on `ctx`.
/// Each item is stored as soon as it is sampled, so an error (or a kill)
/// keeps the finished ones.
pub fn sample_all(
    ctx: &StageCtx<'_>,
    model: &Sampler,
    model_hash: Hash,
    sampling: &Sampling,
    seed: u64,
    items: &[Item],
    batch_size: usize,
) -> anyhow::Result<(Vec<Sampled>, usize)> {
    let store: &Store = ctx.store;
    let hashed = sampling.hashed().into_value();
    let keys: Vec<Hash> = items
        .iter()
        .map(|it| {
            fingerprint(&ItemKey {
                model: model_hash,
                sampling: &hashed,
                seed,
                prompt: &it.prompt.key_text(),
                sample_index: it.sample_index,
                cache_key: ITEM_CACHE_VERSION,
            })
        })
        .collect();
    let mut out: Vec<Option<Sampled>> =
        keys.iter().map(|k| store.item_get(k).and_then(|b| serde_json::from_slice(&b).ok())).collect();
    let cached = out.iter().filter(|o| o.is_some()).count();
    let todo: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    let total = items.len() as u64;
    ctx.progress(cached as u64, Some(total), "samples");
    let mut done = cached as u64;
    let mut put = |i: usize, s: Sampled| -> anyhow::Result<u64> {
        store.item_put(&keys[i], &serde_json::to_vec(&s)?)?;
        out[i] = Some(s);
        done += 1;
        Ok(done)
    };
    match model {
        Sampler::Local(lm) => sample_local(ctx, lm, &sampling.params(seed), items, &todo, batch_size, total, &mut put)?,
        Sampler::Remote(client) => openai::batch::sample(client, ctx, sampling, seed, items, &todo, total, &mut put)?,
    }
    Ok((out.into_iter().map(|o| o.expect("every item sampled")).collect(), cached))
}

/// Samples `todo` on a model loaded here, `batch_size` sequences at a time.
#[allow(clippy::too_many_arguments)]
fn sample_local(
    ctx: &StageCtx<'_>,
    lm: &LoadedModel,
    params: &retort_lm::SamplingParams,
    items: &[Item],
    todo: &[usize],
    batch_size: usize,
    total: u64,
    put: &mut Put<'_>,
) -> anyhow::Result<()> {
    let tok = lm.text_tokenizer()?;
    let decode = |t: &[u32]| tok.decode(t);
    for chunk in todo.chunks(batch_size.max(1)) {
        let mut prompts = Vec::with_capacity(chunk.len());
        let mut ids = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let Prompt::Text(text) = &items[i].prompt else {
                anyhow::bail!("row {}: chat turns reach only a remote chat endpoint", items[i].row);
            };
            prompts.push(tok.encode(text, false)?);
            ids.push(item_id(&items[i]));
        }
        let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params, decode: Some(&decode) };
        let gens = generate(lm.model(), &req).map_err(|e| match e.prompt_index() {
            Some(k) => anyhow::anyhow!("row {} (sample {}): {e}", items[chunk[k]].row, items[chunk[k]].sample_index),
            None => e.into(),
        })?;
        let mut done = 0;
        for ((&i, g), id) in chunk.iter().zip(gens).zip(&ids) {
            let s = Sampled {
                response: tok.decode_skip_special(&g.tokens),
                tokens: g.tokens.len(),
                finish_reason: serde_json::to_value(g.finish_reason)?.as_str().unwrap_or("").to_string(),
                seed: *id,
            };
            done = put(i, s)?;
        }
        ctx.progress(done, Some(total), "samples");
    }
    Ok(())
}

/// The per-item id that seeds its RNG: from the prompt and sample index.
pub(crate) fn item_id(item: &Item) -> u64 {
    let h = blake3::hash(format!("{}\u{0}{}", item.sample_index, item.prompt.key_text()).as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}
