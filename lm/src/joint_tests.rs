//! The joint decoder against plain generation: a mix that picks one
//! context decodes exactly that context alone; batching changes nothing.

use super::*;
use crate::config::{LlamaConfig, TokenIds};
use crate::generate::{generate, GenerateRequest};
use crate::test_util::device;

/// Slots [`share_prefixes`] copied, over every test in this process.
pub(super) static COPIED_SLOTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn micro(seed: u64, vocab: usize) -> Llama {
    let mut cfg = LlamaConfig::preset("micro", vocab).unwrap();
    cfg.eos_token_id = Some(TokenIds::One(vocab as u32 - 1));
    cfg.init_seeded(seed, &device())
}

/// Samples from context `pick` alone, and counts its calls.
struct Pick(usize);

impl Mix for Pick {
    type State = usize;
    fn start(&self, _: usize) -> usize {
        0
    }
    fn mix(&self, calls: &mut usize, _: &[u32], logp: &[&[f32]], _: &[f32], out: &mut [f32]) {
        *calls += 1;
        out.copy_from_slice(logp[self.0]);
    }
}

fn contexts() -> Vec<Vec<Vec<u32>>> {
    vec![
        vec![vec![5, 9, 2, 40, 7], vec![11, 3]],
        vec![vec![1, 2], vec![8, 8, 8, 60, 3, 2, 1]],
        vec![vec![33], vec![44, 45]],
    ]
}

fn plain(model: &Llama, prompts: Vec<Vec<u32>>, params: &SamplingParams) -> Vec<Vec<u32>> {
    let ids: Vec<u64> = (0..prompts.len() as u64).collect();
    let req = GenerateRequest { prompts: &prompts, item_ids: &ids, params, decode: None };
    generate(model, &req).unwrap().into_iter().map(|g| g.tokens).collect()
}

#[test]
fn picking_one_context_is_decoding_it_alone() {
    let model = micro(3, 97);
    let params = SamplingParams { temperature: 0.7, top_p: 0.95, seed: 11, ..SamplingParams::greedy(12) };
    let ctxs = contexts();
    let ids: Vec<u64> = (0..3).collect();
    for pick in [0, 1] {
        let req = JointRequest { models: &[&model, &model], contexts: &ctxs, item_ids: &ids, params: &params, decode: None, repeat: None };
        let joint = generate_joint(&req, &Pick(pick)).unwrap();
        let alone = plain(&model, ctxs.iter().map(|c| c[pick].clone()).collect(), &params);
        for (j, a) in joint.iter().zip(&alone) {
            assert_eq!(&j.tokens, a, "context {pick}");
            assert_eq!(j.state, j.tokens.len(), "one mix per token");
            assert_eq!(j.stats.len(), j.tokens.len());
            // The picked context's stats are the sampled token's own log-prob.
            assert!(j.stats.iter().all(|s| s.len() == 2 && s[pick].logprob <= 0.0 && s[pick].entropy >= 0.0));
        }
    }
}

#[test]
fn batched_split_or_alone_give_the_same_continuations() {
    let model = micro(4, 97);
    let params = SamplingParams { temperature: 1.0, seed: 5, ..SamplingParams::greedy(10) };
    let ctxs = contexts();
    let ids = [7u64, 8, 9];
    // An even geometric mix of the two streams.
    struct Half;
    impl Mix for Half {
        type State = ();
        fn start(&self, _: usize) {}
        fn mix(&self, _: &mut (), _: &[u32], logp: &[&[f32]], _: &[f32], out: &mut [f32]) {
            for (o, (a, b)) in out.iter_mut().zip(logp[0].iter().zip(logp[1])) {
                *o = 0.5 * a + 0.5 * b;
            }
        }
    }
    let req = JointRequest { models: &[&model, &model], contexts: &ctxs, item_ids: &ids, params: &params, decode: None, repeat: None };
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let whole: Vec<Vec<u32>> = one_thread.install(|| generate_joint(&req, &Half).unwrap()).into_iter().map(|g| g.tokens).collect();
    let three = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let split: Vec<Vec<u32>> = three.install(|| generate_joint(&req, &Half).unwrap()).into_iter().map(|g| g.tokens).collect();
    assert_eq!(whole, split);
    for i in 0..3 {
        let alone = JointRequest { contexts: &ctxs[i..=i], item_ids: &ids[i..=i], ..req };
        let got = one_thread.install(|| generate_joint(&alone, &Half).unwrap());
        assert_eq!(got[0].tokens, whole[i], "item {i}");
    }
}

#[test]
fn two_models_and_repeats() {
    let (a, b) = (micro(1, 97), micro(2, 97));
    let params = SamplingParams::greedy(8);
    let ctxs = contexts();
    let ids = [0u64, 1, 2];
    let req = JointRequest { models: &[&a, &b], contexts: &ctxs, item_ids: &ids, params: &params, decode: None, repeat: None };
    let got: Vec<Vec<u32>> = generate_joint(&req, &Pick(1)).unwrap().into_iter().map(|g| g.tokens).collect();
    assert_eq!(got, plain(&b, ctxs.iter().map(|c| c[1].clone()).collect(), &params));
    // Vocabularies must agree.
    let c = micro(1, 90);
    let e = generate_joint(&JointRequest { models: &[&a, &c], ..req }, &Pick(0)).unwrap_err();
    assert!(e.to_string().contains("different vocabularies"), "{e}");

    // A repeated n-gram stops the stream at the first check that sees it.
    let r = RepeatStop { n: 2, times: 3, every: 1 };
    assert!(r.repeats(&[1, 2, 1, 2, 1, 2]) && !r.repeats(&[1, 2, 1, 2, 3, 4]));
    struct Loop;
    impl Mix for Loop {
        type State = ();
        fn start(&self, _: usize) {}
        fn mix(&self, _: &mut (), tokens: &[u32], _: &[&[f32]], _: &[f32], out: &mut [f32]) {
            // Force 3, 4, 3, 4, ...
            out.fill(-1e9);
            out[3 + tokens.len() % 2] = 0.0;
        }
    }
    let params = SamplingParams::greedy(50);
    let req = JointRequest { models: &[&a], contexts: &[vec![vec![1]]], item_ids: &[0], params: &params, decode: None, repeat: Some(r) };
    let g = generate_joint(&req, &Loop).unwrap();
    assert_eq!(g[0].tokens, [3, 4, 3, 4, 3, 4]);
    assert_eq!(g[0].finish_reason, FinishReason::Repeat);
}

/// Enough items that each context of a packed model gets its own cache:
/// the second context's prompts share a prefix with the first's, which is
/// copied from the first cache, not recomputed. The continuations and
/// every stat under both contexts are the same bits as a run whose second
/// context is another copy of the model (so nothing is shared).
#[test]
fn shared_prompt_prefixes_give_the_same_bits_as_prefilling_them() {
    let (_, packed) = crate::test_util::burn_and_packed();
    let other = packed.clone();
    let n = 10;
    assert!(2 * n > crate::qmatmul::row_kernel_rows(), "one cache per context");
    // Context 0: a question and a hint; context 1: the question and a tail.
    let ctxs: Vec<Vec<Vec<u32>>> = (0..n as u32)
        .map(|i| {
            let question: Vec<u32> = (0..20 + i % 4).map(|t| (t * 7 + i * 3 + 1) % 60).collect();
            let hint: Vec<u32> = (0..6 + i % 3).map(|t| (t * 5 + i) % 60).collect();
            let tail = vec![61, 62 - i % 2];
            vec![[question.clone(), hint].concat(), [question, tail].concat()]
        })
        .collect();
    let ids: Vec<u64> = (0..n as u64).collect();
    let params = SamplingParams { temperature: 0.8, seed: 3, ..SamplingParams::greedy(8) };
    let run = |second: &Llama| {
        let models = [&packed, second];
        let req = JointRequest { models: &models, contexts: &ctxs, item_ids: &ids, params: &params, decode: None, repeat: None };
        generate_joint(&req, &Pick(1)).unwrap()
    };
    let before = COPIED_SLOTS.load(std::sync::atomic::Ordering::Relaxed);
    let shared = run(&packed);
    assert!(COPIED_SLOTS.load(std::sync::atomic::Ordering::Relaxed) > before, "no prefix was shared");
    let alone = run(&other);
    for (s, a) in shared.iter().zip(&alone) {
        assert_eq!(s.tokens, a.tokens);
        assert_eq!(s.stats, a.stats);
    }
    // And what the second context decodes is what it decodes by itself.
    let by_itself = plain(&packed, ctxs.iter().map(|c| c[1].clone()).collect(), &params);
    assert_eq!(shared.iter().map(|g| g.tokens.clone()).collect::<Vec<_>>(), by_itself);
}
