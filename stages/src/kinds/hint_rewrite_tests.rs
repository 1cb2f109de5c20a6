//! Hinted Decoding against its limits on a real (random, tiny) model:
//! β = 0 is the hinted stream alone, λ ≡ 1 the plain stream, the switch
//! happens at the token after the delimiter, and bad input is refused.

use super::*;
use retort_lm::config::TokenIds;
use retort_lm::{generate, GenerateRequest, Llama, LlamaConfig, SamplingParams};

fn micro() -> Llama {
    let mut cfg = LlamaConfig::preset("micro", 97).unwrap();
    cfg.eos_token_id = Some(TokenIds::One(96));
    cfg.init_seeded(9, &retort_lm::DeviceKind::Cpu.device().unwrap())
}

/// Token `t` reads as the character `'!' + t` (so `#` is token 2).
fn decode(t: &[u32]) -> String {
    t.iter().map(|&x| char::from(b'!' + (x % 90) as u8)).collect()
}

fn mix(beta: f64, delimiter: Option<&str>) -> HintMix<'_> {
    HintMix { beta, schedule: LambdaSchedule::Linear, vocab: 97, delimiter, decode: &decode }
}

const HINTED: [u32; 6] = [10, 20, 30, 40, 50, 60];
const PLAIN: [u32; 3] = [10, 70, 71];

fn joint(m: &Llama, mix: &HintMix<'_>, params: &SamplingParams) -> retort_lm::joint::JointGeneration<HintState> {
    let ctxs = vec![vec![HINTED.to_vec(), PLAIN.to_vec()]];
    let req = JointRequest { models: &[m, m], contexts: &ctxs, item_ids: &[5], params, decode: None, repeat: None };
    generate_joint(&req, mix).unwrap().remove(0)
}

fn alone(m: &Llama, prompt: Vec<u32>, params: &SamplingParams) -> Vec<u32> {
    let req = GenerateRequest { prompts: &[prompt], item_ids: &[5], params, decode: None };
    generate(m, &req).unwrap().remove(0).tokens
}

#[test]
fn beta_zero_is_the_hinted_stream_alone() {
    let m = micro();
    let params = SamplingParams { temperature: 0.7, top_p: 0.95, seed: 3, ..SamplingParams::greedy(16) };
    let g = joint(&m, &mix(0.0, None), &params);
    assert_eq!(g.tokens, alone(&m, HINTED.to_vec(), &params));
    assert_eq!(g.state.lambda_sum, 0.0);
}

#[test]
fn lambda_one_is_the_plain_stream_after_the_first_token() {
    let m = micro();
    let params = SamplingParams::greedy(12);
    // β so large that λ = clamp(β·H/log|V|) is 1 at every step after the first.
    let g = joint(&m, &mix(1e9, None), &params);
    assert_eq!(g.tokens[0], alone(&m, HINTED.to_vec(), &SamplingParams::greedy(1))[0], "the first token is the hinted stream's");
    let mut plain = PLAIN.to_vec();
    plain.push(g.tokens[0]);
    assert_eq!(g.tokens[1..], alone(&m, plain, &SamplingParams::greedy(11))[..]);
    assert!((g.state.lambda_sum - 11.0).abs() < 1e-9);
}

#[test]
fn the_switch_happens_at_the_token_after_the_delimiter() {
    let m = mix(0.0, Some("#"));
    let (p, q) = (vec![-1.0f32, -2.0, -3.0], vec![-3.0f32, -2.0, -1.0]);
    let mut state = HintState::default();
    let mut out = vec![0f32; 3];
    // Tokens 0, 1 ("!\""): still the hinted stream (β = 0).
    for tokens in [&[][..], &[0], &[0, 1]] {
        m.mix(&mut state, tokens, &[&p, &q], &[1.0, 1.0], &mut out);
        assert_eq!(out, p, "after {tokens:?}");
    }
    // Token 2 is "#": the next token is the plain stream's.
    m.mix(&mut state, &[0, 1, 2], &[&p, &q], &[1.0, 1.0], &mut out);
    assert_eq!(out, q);
    assert_eq!(state.switched_at, Some(3));
    m.mix(&mut state, &[0, 1, 2, 0], &[&p, &q], &[1.0, 1.0], &mut out);
    assert_eq!((out, state.switched_at), (q.clone(), Some(3)), "it stays switched");
    // The same on the model: with a delimiter that is the first token written,
    // every later token is the plain stream's (λ = 1), none the mix's.
    let model = micro();
    let first = alone(&model, HINTED.to_vec(), &SamplingParams::greedy(1))[0];
    let delim = decode(&[first]);
    let g = joint(&model, &mix(0.0, Some(&delim)), &SamplingParams::greedy(8));
    assert_eq!(g.state.switched_at, Some(1));
    assert!((g.state.lambda_sum - 7.0).abs() < 1e-9);
}

fn stage(yaml: &str) -> HintRewriteStage {
    serde_yaml::from_str(yaml).unwrap()
}

#[test]
fn bad_settings_and_references_are_clear_errors() {
    let e = stage("{model: m, data: d, hint: 'H {{ reference }}', beta: -1}").check().unwrap_err();
    assert_eq!(e.field, "beta");
    assert!(e.message.contains("0 or more"), "{}", e.message);
    let e = stage("{model: m, data: d, hint: 'H {{ reference '}").check().unwrap_err();
    assert_eq!(e.field, "hint");
    assert!(stage("{model: m, data: d, hint: 'H {{ reference }}', delimiter: ''}").check().is_err());

    let s = stage(r#"{model: m, data: d, hint: "Ref {{ reference }}\n{{ prompt }}", delimiter: '#'}"#);
    let templates = s.templates().unwrap();
    let tok = Tokenizer::train_char_level(vec!["abc #".to_string()], &retort_lm::tokenizer::DEFAULT_SPECIALS).unwrap();
    let row = |r: &str| -> Row { serde_json::from_value(serde_json::json!({"prompt": "Q: 1+2?", "reference": r})).unwrap() };
    let (hinted, plain) = s.prompts(&templates, &row("1+2=3 #3"), &tok).unwrap();
    assert_eq!((hinted.as_str(), plain.as_str()), ("Ref 1+2=3 #3\nQ: 1+2?", "Q: 1+2?"));
    let e = s.prompts(&templates, &row("three"), &tok).unwrap_err().to_string();
    assert!(e.contains("no answer delimiter \"#\"") && e.contains("set `delimiter:`"), "{e}");
}
