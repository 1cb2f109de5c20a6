//! Continuing from kept states against encoding the whole new prompt, on
//! both caches: burn's (f32 weights) and the host engine's (packed Q8_0).

use super::*;
use crate::generate::{generate, generate_kv, last_logits, prefill, GenerateRequest};
use crate::sampling::{argmax, SamplingParams};
use crate::test_util::{assert_close, device};
use crate::LmError;

/// Logits after a continuation match a full prefill within this (relative,
/// as [`assert_close`]); measured worst (printed by the tests): 6.2e-7 on
/// burn's cache, 1.0e-6 on the host engine's.
const TOL: f32 = 1e-5;

/// The same weights twice: on burn and packed (Q8_0).
fn models() -> (Llama, Llama) {
    crate::test_util::burn_and_packed()
}

fn req<'a>(prompts: &'a [Vec<u32>], ids: &'a [u64], params: &'a SamplingParams) -> GenerateRequest<'a> {
    GenerateRequest { prompts, item_ids: ids, params, decode: None }
}

/// Step-1 prompts of different lengths, and states kept after 6 greedy tokens.
fn step_one(model: &Llama) -> (Vec<Vec<u32>>, Vec<KvState>, Vec<Vec<u32>>) {
    let prompts: Vec<Vec<u32>> = vec![vec![5, 17, 3, 8, 42], vec![9, 2], vec![7, 7, 30, 1, 22, 50, 11, 4], vec![12, 6, 33]];
    let params = SamplingParams { eos_token_ids: Some(vec![]), ..SamplingParams::greedy(6) };
    let ids: Vec<u64> = (0..prompts.len() as u64).collect();
    let out = generate_kv(model, &req(&prompts, &ids, &params), None, true).unwrap();
    let mut states = Vec::new();
    let mut streams = Vec::new();
    for ((g, s), p) in out.into_iter().zip(&prompts) {
        let s = s.expect("kept");
        // The stream: the prompt and every generated token but the last.
        let want: Vec<u32> = p.iter().chain(&g.tokens[..g.tokens.len() - 1]).copied().collect();
        assert_eq!(s.tokens(), want.as_slice());
        assert!(s.fits(model) && !s.is_empty());
        let mut full = want;
        full.push(*g.tokens.last().unwrap());
        streams.push(full);
        states.push(s);
    }
    (prompts, states, streams)
}

/// Step-2 prompts sharing, with their state's stream: all of it and more,
/// part of it, nothing, exactly the kept tokens, and a shorter prefix.
fn step_two(streams: &[Vec<u32>], states: &[KvState]) -> Vec<Vec<u32>> {
    let kept = |i: usize| states[i].tokens().to_vec();
    vec![
        [streams[0].clone(), vec![1, 2, 3]].concat(),
        [streams[1][..4].to_vec(), vec![60, 61, 62, 5, 9]].concat(),
        [vec![40], streams[2].clone()].concat(),
        kept(3),
    ]
}

fn check_continuation(model: &Llama) -> f32 {
    let (_, states, streams) = step_one(model);
    let mut prompts = step_two(&streams, &states);
    let mut from = states.clone();
    // A fifth sequence: a prefix of another's kept tokens (shorter prompt).
    prompts.push(states[2].tokens()[..3].to_vec());
    from.push(states[2].clone());
    let shared: Vec<usize> = prompts.iter().zip(&from).map(|(p, s)| common_prefix(s.tokens(), p)).collect();
    assert_eq!(shared, [states[0].tokens().len(), 4, 0, states[3].tokens().len(), 3]);

    // Logits after loading the kept prefixes, against each prompt alone.
    let max_len = prompts.iter().map(Vec::len).max().unwrap();
    let pads: Vec<usize> = prompts.iter().map(|p| max_len - p.len()).collect();
    let vocab = model.config().vocab_size;
    let mut worst = 0f32;
    // Sequence 2 shares nothing, so the batch starts at its padding; without
    // it the batch starts later (more is kept).
    for rows in [vec![0, 1, 2, 3, 4], vec![0, 1, 3, 4], vec![0, 3]] {
        let ps: Vec<Vec<u32>> = rows.iter().map(|&r| prompts[r].clone()).collect();
        let fs: Vec<KvState> = rows.iter().map(|&r| from[r].clone()).collect();
        let max_len = ps.iter().map(Vec::len).max().unwrap();
        let pads: Vec<usize> = ps.iter().map(|p| max_len - p.len()).collect();
        let start = resume_point(&ps, &pads, &fs);
        assert!(start > 0 || rows.contains(&2), "rows {rows:?} keep something");
        let mut cache = Cache::new(model, ps.len(), max_len + 4);
        cache.load_states(model, &fs, &pads, start);
        assert_eq!(cache.len(), start);
        let logits = prefill(model, &ps, &pads, &mut cache);
        for (b, p) in ps.iter().enumerate() {
            let got = &logits[b * vocab..(b + 1) * vocab];
            let want = last_logits(model, p);
            assert_close(got, &want, TOL);
            assert_eq!(argmax(got), argmax(&want), "rows {rows:?}, sequence {b}");
            let d = got.iter().zip(&want).map(|(g, w)| (g - w).abs() / (1.0 + w.abs())).fold(0f32, f32::max);
            worst = worst.max(d);
        }
    }
    assert!(pads.iter().any(|&p| p > 0));

    // Greedy tokens: the continuation samples what a fresh generation does,
    // and keeps a state that continues again.
    let params = SamplingParams { eos_token_ids: Some(vec![]), ..SamplingParams::greedy(7) };
    let ids: Vec<u64> = (10..10 + prompts.len() as u64).collect();
    let fresh = generate(model, &req(&prompts, &ids, &params)).unwrap();
    let cont = generate_kv(model, &req(&prompts, &ids, &params), Some(&from), true).unwrap();
    let tokens: Vec<_> = cont.iter().map(|(g, _)| g.clone()).collect();
    assert_eq!(tokens, fresh);
    for ((g, s), p) in cont.iter().zip(&prompts) {
        let s = s.as_ref().unwrap();
        assert_eq!(&s.tokens()[..p.len()], p.as_slice());
        assert_eq!(s.tokens().len(), p.len() + g.tokens.len() - 1);
    }
    // Sampling (temperature > 0) continues the same way too.
    let hot = SamplingParams { temperature: 1.3, seed: 3, eos_token_ids: Some(vec![]), ..SamplingParams::greedy(7) };
    let fresh = generate(model, &req(&prompts, &ids, &hot)).unwrap();
    let cont = generate_kv(model, &req(&prompts, &ids, &hot), Some(&from), false).unwrap();
    assert!(cont.iter().all(|(_, s)| s.is_none()));
    assert_eq!(cont.into_iter().map(|(g, _)| g).collect::<Vec<_>>(), fresh);
    worst
}

#[test]
fn continuing_kept_states_matches_a_full_prefill_on_burn() {
    let (burn, _) = models();
    let worst = check_continuation(&burn);
    eprintln!("burn cache: worst relative logit difference {worst:e}");
}

#[test]
fn continuing_kept_states_matches_a_full_prefill_on_the_host_engine() {
    let (_, packed) = models();
    let worst = check_continuation(&packed);
    eprintln!("host cache: worst relative logit difference {worst:e}");
}

#[test]
fn states_from_another_model_or_of_the_wrong_count_are_refused() {
    let (burn, _) = models();
    let (prompts, states, _) = step_one(&burn);
    let ids: Vec<u64> = (0..prompts.len() as u64).collect();
    let params = SamplingParams::greedy(2);
    let e = generate_kv(&burn, &req(&prompts, &ids, &params), Some(&states[..1]), false).unwrap_err();
    assert!(matches!(e, LmError::Request { .. }), "{e}");
    assert!(e.to_string().contains("4 prompts but 1 kept states"), "{e}");
    let mut cfg = burn.config().clone();
    cfg.num_hidden_layers += 1;
    let other = cfg.init_seeded(1, &device());
    let e = generate_kv(&other, &req(&prompts, &ids, &params), Some(&states), false).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
    // Empty states keep nothing and fit any model.
    let empty = vec![KvState::default(); prompts.len()];
    let a = generate_kv(&other, &req(&prompts, &ids, &params), Some(&empty), false).unwrap();
    let b = generate(&other, &req(&prompts, &ids, &params)).unwrap();
    assert_eq!(a.into_iter().map(|(g, _)| g).collect::<Vec<_>>(), b);
}
