//! Sampling many (prompt, sample) items through a model, with the item
//! cache in front: shared by `generate` and `evaluate`.
//!
//! An item's key covers the model's content hash, the sampling parameters,
//! the exact prompt text, the sample index and the seed, so adding prompts
//! samples only the new ones and a killed run resumes where it stopped.
//! Each item's RNG is seeded from (seed, item id), and the item id is derived
//! from the prompt text and sample index, not the item's position: a sample
//! does not depend on which other prompts share its batch or the file.

use std::sync::Arc;

use retort_cache::{fingerprint, Hash, ItemLog, Store};
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
    /// Each generated token's log-prob, when the stage asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// One generated token's log-prob (natural log, under the model's own
/// distribution) and, from a remote server, the most likely alternatives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-prob.
    pub logprob: f64,
    /// The most likely tokens at this position, most likely first (empty
    /// unless asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative at one position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    /// The token's text.
    pub token: String,
    /// Its log-prob.
    pub logprob: f64,
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
    /// Only when asked for, so items sampled without log-probs keep their keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<usize>,
}

/// What a stage's items share, which names their item log: the key's
/// fields other than the prompt and the sample index. A stage reads only
/// its own log, however many other items the cache holds.
#[derive(Serialize)]
struct ItemNamespace<'a> {
    model: Hash,
    sampling: &'a serde_json::Value,
    seed: u64,
    cache_key: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<usize>,
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
/// keeps the finished ones. `logprobs: Some(top)` asks for each token's
/// log-prob and its `top` alternatives (an item cached without them is
/// another item: it is sampled again, with them).
#[allow(clippy::too_many_arguments)]
pub fn sample_all(
    ctx: &StageCtx<'_>,
    model: &Sampler,
    model_hash: Hash,
    sampling: &Sampling,
    seed: u64,
    logprobs: Option<usize>,
    items: &[Item],
    batch_size: usize,
) -> anyhow::Result<(Vec<Sampled>, usize)> {
    let cache = StepCache::open(ctx.store, model_hash, sampling, seed, logprobs)?;
    let keys: Vec<Hash> = items.iter().map(|it| cache.key(it)).collect();
    let mut out: Vec<Option<Sampled>> = Vec::with_capacity(keys.len());
    for k in &keys {
        out.push(cache.get(k)?);
    }
    let cached = out.iter().filter(|o| o.is_some()).count();
    let todo: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
    let total = items.len() as u64;
    ctx.progress(cached as u64, Some(total), "samples");
    let mut done = cached as u64;
    let mut put = |i: usize, s: Sampled| -> anyhow::Result<u64> {
        cache.put(&keys[i], &s)?;
        out[i] = Some(s);
        done += 1;
        Ok(done)
    };
    match model {
        Sampler::Local(lm) => {
            if logprobs.is_some_and(|top| top > 0) {
                // The load-time check (`Ask::TopLogprobs`) stops this first.
                anyhow::bail!("the top alternatives' log-probs come only from a remote model");
            }
            let local = Local { params: &sampling.params(seed), logprobs: logprobs.is_some(), batch_size };
            sample_local(ctx, lm, &local, items, &todo, total, &mut put)?
        }
        Sampler::Remote(client) => openai::batch::sample(client, ctx, sampling, seed, logprobs, items, &todo, total, &mut put)?,
    }
    Ok((out.into_iter().map(|o| o.expect("every item sampled")).collect(), cached))
}

/// One sampling step's items in the item cache: the key fields they share
/// (model, settings, seed), which also name the log they live in.
pub(crate) struct StepCache<'a> {
    store: &'a Store,
    log: Arc<ItemLog>,
    model: Hash,
    hashed: serde_json::Value,
    seed: u64,
    logprobs: Option<usize>,
}

impl<'a> StepCache<'a> {
    /// The log of items sampled by `model_hash` with `sampling` and `seed`.
    pub(crate) fn open(
        store: &'a Store,
        model_hash: Hash,
        sampling: &Sampling,
        seed: u64,
        logprobs: Option<usize>,
    ) -> anyhow::Result<Self> {
        let hashed = sampling.hashed().into_value();
        let ns = ItemNamespace { model: model_hash, sampling: &hashed, seed, cache_key: ITEM_CACHE_VERSION, logprobs };
        let log = store.items(&fingerprint(&ns))?;
        Ok(StepCache { store, log, model: model_hash, hashed, seed, logprobs })
    }

    /// An item's key.
    pub(crate) fn key(&self, item: &Item) -> Hash {
        fingerprint(&ItemKey {
            model: self.model,
            sampling: &self.hashed,
            seed: self.seed,
            prompt: &item.prompt.key_text(),
            sample_index: item.sample_index,
            cache_key: ITEM_CACHE_VERSION,
            logprobs: self.logprobs,
        })
    }

    /// The cached item, if any (one that does not parse counts as absent).
    /// An item of the cache's earlier layout moves into the log when found.
    pub(crate) fn get(&self, key: &Hash) -> anyhow::Result<Option<Sampled>> {
        let bytes = match self.log.get(key) {
            Some(b) => Some(b),
            None => match self.store.legacy_item(key) {
                Some(b) => {
                    self.log.put(key, &b)?;
                    Some(b)
                }
                None => None,
            },
        };
        Ok(bytes.and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Stores a sampled item.
    pub(crate) fn put(&self, key: &Hash, sampled: &Sampled) -> anyhow::Result<()> {
        self.log.put(key, &serde_json::to_vec(sampled)?)?;
        Ok(())
    }
}

/// How a model loaded here samples.
struct Local<'a> {
    params: &'a retort_lm::SamplingParams,
    /// Score each sample's tokens (one more forward pass per sample).
    logprobs: bool,
    /// Sequences per forward pass.
    batch_size: usize,
}

/// Samples `todo` on a model loaded here, `batch_size` sequences at a time.
fn sample_local(
    ctx: &StageCtx<'_>,
    lm: &LoadedModel,
    local: &Local<'_>,
    items: &[Item],
    todo: &[usize],
    total: u64,
    put: &mut Put<'_>,
) -> anyhow::Result<()> {
    let tok = lm.text_tokenizer()?;
    let decode = |t: &[u32]| tok.decode(t);
    let params = local.params;
    for chunk in todo.chunks(local.batch_size.max(1)) {
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
        for (((&i, g), id), prompt) in chunk.iter().zip(gens).zip(&ids).zip(&prompts) {
            let logprobs = local.logprobs.then(|| scored(lm, tok, prompt, &g.tokens));
            let s = Sampled {
                response: tok.decode_skip_special(&g.tokens),
                tokens: g.tokens.len(),
                finish_reason: serde_json::to_value(g.finish_reason)?.as_str().unwrap_or("").to_string(),
                seed: *id,
                logprobs,
            };
            done = put(i, s)?;
        }
        ctx.progress(done, Some(total), "samples");
    }
    Ok(())
}

/// Each of `generated`'s log-probs after `prompt`, under the model's own
/// distribution (temperature 1, before top-k/top-p), as the servers report
/// theirs; an EOS token the model produced counts, as it was sampled.
fn scored(lm: &LoadedModel, tok: &retort_lm::tokenizer::Tokenizer, prompt: &[u32], generated: &[u32]) -> Vec<TokenLogprob> {
    if generated.is_empty() {
        return Vec::new();
    }
    let all: Vec<u32> = prompt.iter().chain(generated).copied().collect();
    let lps = retort_lm::generate::token_logprobs(lm.model(), &all, prompt.len());
    generated
        .iter()
        .zip(lps)
        .map(|(&t, lp)| TokenLogprob { token: tok.decode(&[t]), logprob: f64::from(lp), top_logprobs: Vec::new() })
        .collect()
}

/// The per-item id that seeds its RNG: from the prompt and sample index.
pub(crate) fn item_id(item: &Item) -> u64 {
    let h = blake3::hash(format!("{}\u{0}{}", item.sample_index, item.prompt.key_text()).as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}
