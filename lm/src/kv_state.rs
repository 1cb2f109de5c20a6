//! A sequence's keys and values kept after a generation, so that a later
//! generation whose prompt starts with the same tokens encodes only the rest.
//!
//! [`crate::generate::generate_kv`] with `keep` returns one [`KvState`] per
//! sequence: its token stream (the prompt and every generated token but the
//! last, which was sampled and never fed back) and those tokens' keys and
//! values, copied to the host as the sequence finishes. Given states for a
//! new batch, it keeps, per sequence, the keys and values of the longest
//! common prefix of the state's stream and the new prompt, and prefills the
//! rest. The new prompt's tokens are the caller's (e.g. a re-tokenized
//! text), so what the model sees is that prompt; only the work of encoding
//! the shared prefix is saved. Cascaded inference continues its rationale
//! step this way; a shared question prefix (samples of one prompt) is the
//! same mechanism.
//!
//! Keys are cached after RoPE at each token's own position (its index in
//! its sequence, padding not counted), so they move between batches with
//! different left padding unchanged. The batch shares one cache length, so
//! every sequence re-encodes from the smallest `pad + shared` in the batch:
//! a sequence that shares more than its neighbours recomputes a few of its
//! kept positions (the result is the same up to float rounding). The last
//! prompt token is always encoded again, for its logits.
//!
//! Numerics: a kept position's keys and values came from the pass that made
//! them (prefill, or a decode step for generated tokens), so logits after a
//! continuation match a fresh prefill of the whole prompt within float
//! rounding, not bit for bit (the tests bound the difference).

use crate::generate::Cache;
use crate::model::Llama;

/// One sequence's token stream and its keys and values, per layer
/// `[kv_heads, tokens, head_dim]` on the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KvState {
    tokens: Vec<u32>,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvState {
    /// The tokens whose keys and values are kept, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Whether nothing is kept (a continuation from it prefills everything).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Host memory held, in bytes.
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(|l| l.len() * 4).sum::<usize>() + self.tokens.len() * 4
    }

    /// Whether the state fits `model`: one key and value block per layer of
    /// `kv_heads * tokens * head_dim` values (an empty state fits any model).
    pub(crate) fn fits(&self, model: &Llama) -> bool {
        let cfg = model.config();
        let per_layer = cfg.n_kv_heads() * self.tokens.len() * cfg.head_dim();
        self.is_empty()
            || (self.k.len() == cfg.num_hidden_layers
                && self.v.len() == cfg.num_hidden_layers
                && self.k.iter().chain(&self.v).all(|l| l.len() == per_layer))
    }
}

/// Length of the longest common prefix of `a` and `b`.
pub(crate) fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The cache length from which a batch continuing `from` must be encoded:
/// the smallest `pad + shared` over its sequences, where `shared` is the
/// common prefix of the state's stream and the prompt, less the prompt's
/// last token (always encoded again, for its logits).
pub(crate) fn resume_point(prompts: &[Vec<u32>], pads: &[usize], from: &[KvState]) -> usize {
    prompts
        .iter()
        .zip(pads)
        .zip(from)
        .map(|((p, &pad), s)| pad + common_prefix(s.tokens(), p).min(p.len() - 1))
        .min()
        .unwrap_or(0)
}

impl Cache {
    /// Sequence `row`'s state: `tokens` (its stream, left-padded by `pad`)
    /// and the keys and values of slots `pad..len()`.
    pub(crate) fn row_state(&self, row: usize, pad: usize, tokens: Vec<u32>) -> KvState {
        let (k, v) = match self {
            Cache::Burn(c) => c.row_kv(row, pad),
            Cache::Host(c) => c.row_kv(row, pad),
        };
        debug_assert_eq!(self.len() - pad, tokens.len(), "a state's tokens are its cached positions");
        KvState { tokens, k, v }
    }

    /// Writes all of `state`'s keys and values into sequence `row` at slots
    /// `at..at + state.tokens().len()` (a sequence joining a running batch).
    pub(crate) fn place_state(&mut self, row: usize, at: usize, state: &KvState) {
        let n = state.tokens.len();
        if n == 0 {
            return;
        }
        match self {
            Cache::Host(c) => c.write_row(row, at, n, &state.k, &state.v),
            Cache::Burn(c) => c.write_row(row, at, n, &state.k, &state.v),
        }
    }

    /// Fills an empty cache with the kept positions of each sequence up to
    /// slot `start` (sequence `b`'s first `start - pads[b]` stream tokens at
    /// slots `pads[b]..start`) and sets its length to `start`. Every state
    /// must share those tokens with its prompt ([`resume_point`]).
    pub(crate) fn load_states(&mut self, model: &Llama, from: &[KvState], pads: &[usize], start: usize) {
        if start == 0 {
            return;
        }
        match self {
            Cache::Host(c) => {
                for (b, (s, &pad)) in from.iter().zip(pads).enumerate() {
                    if start > pad {
                        c.write_row(b, pad, start - pad, &s.k, &s.v);
                    }
                }
                c.set_len(start);
            }
            Cache::Burn(c) => {
                let cfg = model.config();
                let (layers, kv, hd) = (cfg.num_hidden_layers, cfg.n_kv_heads(), cfg.head_dim());
                // Per layer `[batch, kv_heads, start, head_dim]`; padding slots stay 0.
                let gather = |pick: &dyn Fn(&KvState) -> &Vec<Vec<f32>>| -> Vec<Vec<f32>> {
                    (0..layers)
                        .map(|l| {
                            let mut out = vec![0f32; from.len() * kv * start * hd];
                            for (b, (s, &pad)) in from.iter().zip(pads).enumerate() {
                                let n = start.saturating_sub(pad);
                                if n == 0 {
                                    continue;
                                }
                                for g in 0..kv {
                                    let src = &pick(s)[l][g * s.tokens.len() * hd..][..n * hd];
                                    let at = ((b * kv + g) * start + pad) * hd;
                                    out[at..at + n * hd].copy_from_slice(src);
                                }
                            }
                            out
                        })
                        .collect()
                };
                let (k, v) = (gather(&|s| &s.k), gather(&|s| &s.v));
                c.load_prefix(k, v, start);
            }
        }
    }
}

#[cfg(test)]
mod tests;
