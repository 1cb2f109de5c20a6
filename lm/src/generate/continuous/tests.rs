use std::sync::Mutex;

use super::*;
use crate::generate::generate_batch;
use crate::sampling::SamplingParams;

/// Every sequence's generation, in request order, with freed rows taking
/// prompts one at a time (or as the engine's policy says, for `join` 0).
fn continuous(model: &Llama, req: &GenerateRequest<'_>, slots: usize, join: usize) -> Vec<Generation> {
    let out = Mutex::new(vec![None; req.prompts.len()]);
    let join = if join == 0 { min_join(model, slots) } else { join };
    joining_at(model, req, slots, join, &|i, g| {
        let mut out = out.lock().unwrap();
        assert!(out[i].is_none(), "sequence {i} finished twice");
        out[i] = Some(g);
    })
    .unwrap();
    out.into_inner().unwrap().into_iter().map(|g| g.expect("every sequence finishes")).collect()
}

fn alone(model: &Llama, prompts: &[Vec<u32>], ids: &[u64], params: &SamplingParams, i: usize) -> Generation {
    let req = GenerateRequest { prompts: &prompts[i..=i], item_ids: &ids[i..=i], params, decode: None };
    generate_batch(model, &req).remove(0)
}

fn prompt(len: usize, seed: usize) -> Vec<u32> {
    (0..len).map(|i| ((i * 7 + seed * 13 + 3) % 60) as u32).collect()
}

#[test]
fn joining_sequences_sample_what_each_would_alone() {
    let (burn, packed) = crate::test_util::burn_and_packed();
    // Equal lengths (no EOS): the waves of 3 join together. The first wave's
    // prompts are short, so the 10-token prompt of the second shifts the
    // rows right; by the third the cache is full and padding is dropped.
    let mut prompts = vec![prompt(2, 0), prompt(3, 1), prompt(2, 2), prompt(10, 3), prompt(1, 4), prompt(4, 5)];
    prompts.extend((6..14).map(|s| prompt(1 + s % 5, s)));
    // A repeated prompt among the joining ones shares its prefill.
    prompts.push(prompt(4, 5));
    let ids: Vec<u64> = (0..prompts.len() as u64).map(|i| 7 + i).collect();
    let fixed = SamplingParams { temperature: 1.0, eos_token_ids: Some(vec![]), ..SamplingParams::greedy(6) };
    // Mixed lengths: an eighth of the vocabulary ends a sequence.
    let mixed = SamplingParams { temperature: 1.0, eos_token_ids: Some((56..64).collect()), ..SamplingParams::greedy(12) };
    for model in [&burn, &packed] {
        for (params, slots, join) in [(&fixed, 3, 1), (&mixed, 3, 1), (&mixed, 5, 2), (&mixed, 5, 0), (&mixed, 1, 1)] {
            let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params, decode: None };
            let got = continuous(model, &req, slots, join);
            for (i, g) in got.iter().enumerate() {
                assert_eq!(
                    *g,
                    alone(model, &prompts, &ids, params, i),
                    "sequence {i}, {slots} slots joining at {join}, packed: {}",
                    model.is_packed()
                );
            }
            if std::ptr::eq(params, &mixed) {
                let lens: std::collections::BTreeSet<usize> = got.iter().map(|g| g.tokens.len()).collect();
                assert!(lens.len() > 2, "the workload mixes lengths: {lens:?}");
            }
        }
    }
}

#[test]
fn a_cache_kept_full_by_long_runs_still_admits_a_long_prompt() {
    let (_, packed) = crate::test_util::burn_and_packed();
    // Long prompts behind short ones, 2 slots, 20 new tokens each: the cache
    // drops padding many times and shifts right for the long prompts.
    let prompts: Vec<Vec<u32>> = (0..9).map(|s| prompt(if s % 3 == 2 { 24 } else { 1 + s }, s)).collect();
    let ids: Vec<u64> = (0..prompts.len() as u64).collect();
    let params = SamplingParams { temperature: 0.8, eos_token_ids: Some(vec![60, 61, 62, 63]), ..SamplingParams::greedy(20) };
    let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params: &params, decode: None };
    for (i, g) in continuous(&packed, &req, 2, 1).iter().enumerate() {
        assert_eq!(*g, alone(&packed, &prompts, &ids, &params, i), "sequence {i}");
    }
}

#[test]
fn stop_strings_and_bad_prompts_behave_as_in_generate() {
    let (_, packed) = crate::test_util::burn_and_packed();
    let prompts: Vec<Vec<u32>> = (0..6).map(|s| prompt(2 + s, s)).collect();
    let ids: Vec<u64> = (0..6).collect();
    // A "stop string": token 5 or 9 ends a sequence, through the decoder.
    let decode = |t: &[u32]| t.iter().map(|&t| if t == 5 || t == 9 { 'x' } else { 'a' }).collect::<String>();
    let params = SamplingParams { temperature: 1.0, stop: vec!["x".into()], ..SamplingParams::greedy(10) };
    let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params: &params, decode: Some(&decode) };
    let got = continuous(&packed, &req, 3, 2);
    let want = generate_batch(&packed, &req);
    assert_eq!(got, want);
    // Nothing runs when one prompt is bad; the error names it.
    let mut bad = prompts.clone();
    bad[4].clear();
    let req = GenerateRequest { prompts: &bad, item_ids: &ids, params: &params, decode: Some(&decode) };
    let called = Mutex::new(0);
    let err = generate_continuous(&packed, &req, 2, &|_, _| *called.lock().unwrap() += 1).unwrap_err();
    assert_eq!(err.prompt_index(), Some(4));
    assert_eq!(*called.lock().unwrap(), 0);
}
