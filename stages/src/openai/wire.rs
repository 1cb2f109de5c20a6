//! What goes over the wire: request bodies for `/completions` and
//! `/chat/completions`, and the parts of a response retort keeps.
//!
//! Servers differ in small ways this file absorbs: llama-server caps `n` at
//! its slots and answers 400 above that ([`n_cap`]); top_k and min_p are not
//! OpenAI fields but vLLM and llama-server take them, so they are sent only
//! when set; log-probs come in two formats, the legacy completions one
//! (vLLM, OpenAI) and the chat one (chat endpoints, and llama-server's
//! completions too), and [`read_logprobs`] reads either on either endpoint.

use retort_engine::{Endpoint, OpenAiModel};
use serde_json::{json, Map, Value};

use crate::common::sampler::{Prompt, TokenLogprob, TopLogprob};
use crate::common::sampling::Sampling;

/// The most alternatives per token a request may ask for (OpenAI's and
/// vLLM's default limit).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// The JSON body of a request for `n` samples of `prompt`, with each
/// token's log-prob and its `top` alternatives when `logprobs` is `Some(top)`.
pub fn body(m: &OpenAiModel, sampling: &Sampling, prompt: &Prompt, n: usize, seed: u64, logprobs: Option<usize>) -> Value {
    let Sampling { max_tokens, temperature, top_k, top_p, min_p, stop } = sampling;
    let mut b = Map::new();
    b.insert("model".into(), m.model.clone().into());
    match prompt {
        Prompt::Text(t) => b.insert("prompt".into(), t.clone().into()),
        Prompt::Chat(turns) => b.insert("messages".into(), json!(turns)),
    };
    b.insert("max_tokens".into(), (*max_tokens).into());
    b.insert("temperature".into(), json!(temperature));
    b.insert("top_p".into(), json!(top_p));
    if *top_k > 0 {
        b.insert("top_k".into(), (*top_k).into());
    }
    if *min_p > 0.0 {
        b.insert("min_p".into(), json!(min_p));
    }
    if !stop.is_empty() {
        b.insert("stop".into(), json!(stop));
    }
    b.insert("n".into(), n.into());
    b.insert("seed".into(), seed.into());
    // At least one alternative is asked for: llama-server answers no
    // log-probs at all to 0 (OpenAI and vLLM give the sampled token's);
    // [`parse`] keeps the `top` that were asked for.
    match (logprobs.map(|top| top.max(1)), m.endpoint) {
        (None, _) => {}
        // The legacy API's `logprobs` is the number of alternatives.
        (Some(top), Endpoint::Completions) => {
            b.insert("logprobs".into(), top.into());
        }
        (Some(top), Endpoint::Chat) => {
            b.insert("logprobs".into(), true.into());
            b.insert("top_logprobs".into(), top.into());
        }
    }
    for (k, v) in &m.extra_body {
        b.insert(k.clone(), v.clone());
    }
    Value::Object(b)
}

/// One sample of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// The generated text.
    pub text: String,
    /// `stop`, `length`...
    pub finish_reason: String,
    /// Per generated token, when asked for.
    pub logprobs: Option<Vec<TokenLogprob>>,
}

/// A parsed response: its choices in `index` order and the completion tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// One per requested sample.
    pub choices: Vec<Choice>,
    /// `usage.completion_tokens` (summed over the choices), when reported.
    pub tokens: Option<usize>,
}

/// Reads a response body of `endpoint` that should hold `n` choices (each
/// with log-probs and `top` alternatives when `logprobs` is `Some(top)`: a
/// server that ignores the field is an error, not a row without them).
pub fn parse(endpoint: Endpoint, text: &str, n: usize, logprobs: Option<usize>) -> Result<Completion, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("response is not JSON ({e})"))?;
    let list = v.get("choices").and_then(Value::as_array).ok_or("response has no `choices`")?;
    let mut indexed: Vec<(u64, Choice)> = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let text = match endpoint {
            Endpoint::Completions => c.get("text"),
            Endpoint::Chat => c.get("message").and_then(|m| m.get("content")),
        };
        // A chat answer with no content (a refusal, tool call) is empty text.
        let text = match text {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None if endpoint == Endpoint::Chat => String::new(),
            _ => return Err(format!("choice {i} has no text")),
        };
        let finish_reason = c.get("finish_reason").and_then(Value::as_str).unwrap_or("").to_string();
        let index = c.get("index").and_then(Value::as_u64).unwrap_or(i as u64);
        let lps = match (logprobs, c.get("logprobs")) {
            (None, _) => None,
            (Some(top), Some(v)) if !v.is_null() => {
                let mut lps = read_logprobs(v).map_err(|e| format!("choice {i}: logprobs: {e}"))?;
                lps.iter_mut().for_each(|t| t.top_logprobs.truncate(top));
                Some(lps)
            }
            _ => return Err(format!("choice {i} has no `logprobs` (does the server support them?)")),
        };
        indexed.push((index, Choice { text, finish_reason, logprobs: lps }));
    }
    if indexed.len() != n {
        return Err(format!("asked for {n} choices, got {}", indexed.len()));
    }
    indexed.sort_by_key(|(i, _)| *i);
    let tokens = v.pointer("/usage/completion_tokens").and_then(Value::as_u64).map(|t| t as usize);
    Ok(Completion { choices: indexed.into_iter().map(|(_, c)| c).collect(), tokens })
}

/// A choice's `logprobs`, in either format:
/// - chat (and llama-server's completions): `{"content": [{"token",
///   "logprob", "top_logprobs": [{"token", "logprob"}]}]}`;
/// - legacy completions (vLLM, OpenAI): `{"tokens": [..], "token_logprobs":
///   [..], "top_logprobs": [{TOKEN: LOGPROB}, ..]}`.
///
/// Alternatives come most likely first, whatever order the server used.
pub fn read_logprobs(v: &Value) -> Result<Vec<TokenLogprob>, String> {
    if let Some(content) = v.get("content") {
        let list = content.as_array().ok_or("`content` is not a list")?;
        return list
            .iter()
            .enumerate()
            .map(|(t, e)| {
                let (token, logprob) = token_and_logprob(e).ok_or_else(|| format!("token {t} has no `token` and `logprob`"))?;
                let mut top = Vec::new();
                for alt in e.get("top_logprobs").and_then(Value::as_array).into_iter().flatten() {
                    let (token, logprob) = token_and_logprob(alt).ok_or_else(|| format!("token {t}: an alternative has no `token` and `logprob`"))?;
                    top.push(TopLogprob { token, logprob });
                }
                Ok(TokenLogprob { token, logprob, top_logprobs: most_likely_first(top) })
            })
            .collect();
    }
    let (Some(tokens), Some(lps)) = (v.get("tokens").and_then(Value::as_array), v.get("token_logprobs").and_then(Value::as_array)) else {
        return Err("neither the chat format (`content`) nor the legacy one (`tokens`, `token_logprobs`)".into());
    };
    if tokens.len() != lps.len() {
        return Err(format!("{} tokens but {} token_logprobs", tokens.len(), lps.len()));
    }
    let tops = v.get("top_logprobs").and_then(Value::as_array);
    let mut out = Vec::with_capacity(tokens.len());
    for (t, (token, lp)) in tokens.iter().zip(lps).enumerate() {
        let token = token.as_str().ok_or_else(|| format!("tokens[{t}] is not a string"))?.to_string();
        let logprob = lp.as_f64().ok_or_else(|| format!("token_logprobs[{t}] is not a number"))?;
        let mut top = Vec::new();
        if let Some(alts) = tops.and_then(|l| l.get(t)).and_then(Value::as_object) {
            for (token, lp) in alts {
                let logprob = lp.as_f64().ok_or_else(|| format!("top_logprobs[{t}][{token:?}] is not a number"))?;
                top.push(TopLogprob { token: token.clone(), logprob });
            }
        }
        out.push(TokenLogprob { token, logprob, top_logprobs: most_likely_first(top) });
    }
    Ok(out)
}

fn token_and_logprob(e: &Value) -> Option<(String, f64)> {
    Some((e.get("token")?.as_str()?.to_string(), e.get("logprob")?.as_f64()?))
}

fn most_likely_first(mut top: Vec<TopLogprob>) -> Vec<TopLogprob> {
    top.sort_by(|a, b| b.logprob.total_cmp(&a.logprob).then_with(|| a.token.cmp(&b.token)));
    top
}

/// The server's own message in an error body (`{"error": {"message"}}`,
/// `{"error": "..."}`, `{"message"}`, `{"detail"}`), else the body's start.
pub fn error_message(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let found = v.as_ref().and_then(|v| {
        let e = v.get("error");
        e.and_then(|e| e.get("message")).or(e).or_else(|| v.get("message")).or_else(|| v.get("detail")).cloned()
    });
    let text = match found {
        Some(Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => body.trim().to_string(),
    };
    text.chars().take(500).collect()
}

/// Whether a 400 to a request for `n > 1` samples says `n` is too large,
/// and if so the largest `n` the server takes (read from its message, e.g.
/// llama-server's "Field 'n': Value must be between 1 <= value <= 2", or
/// half of `n` when it gives none).
pub fn n_cap(message: &str, n: usize) -> Option<usize> {
    if n <= 1 {
        return None;
    }
    let m = message.to_lowercase();
    let names_n = ["'n'", "`n`", "\"n\"", "field n", "n must", "n should"].iter().any(|p| m.contains(p)) || m.starts_with("n ");
    if !names_n {
        return None;
    }
    let stated = m
        .split("<=")
        .skip(1)
        .filter_map(|rest| rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
        .last();
    Some(stated.filter(|&c| c >= 1 && c < n).unwrap_or((n / 2).max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use retort_lm::chat::ChatMessage;

    fn model(endpoint: Endpoint) -> OpenAiModel {
        serde_json::from_value(json!({"base_url": "http://x/v1", "model": "m", "endpoint": endpoint, "extra_body": {"top_k": 5, "repetition_penalty": 1.1}}))
            .unwrap()
    }

    #[test]
    fn bodies_carry_sampling_seed_n_and_extra_fields() {
        let s = Sampling { stop: vec!["\n".into()], ..Sampling::default() };
        let b = body(&model(Endpoint::Completions), &s, &Prompt::Text("hi".into()), 3, 7, None);
        assert_eq!(b["prompt"], "hi");
        assert_eq!(b["n"], 3);
        assert_eq!(b["seed"], 7);
        assert_eq!(b["stop"], json!(["\n"]));
        assert_eq!(b["max_tokens"], 256);
        assert_eq!(b["top_k"], 5, "extra_body wins");
        assert_eq!(b["repetition_penalty"], 1.1);
        assert!(b.get("min_p").is_none());
        let turns = Prompt::Chat(vec![ChatMessage::user("q")]);
        let b = body(&model(Endpoint::Chat), &Sampling::greedy(), &turns, 1, 0, None);
        assert_eq!(b["messages"], json!([{"role": "user", "content": "q"}]));
        assert!(b.get("stop").is_none() && b.get("prompt").is_none());
        assert!(b.get("logprobs").is_none() && b.get("top_logprobs").is_none());
    }

    #[test]
    fn log_probs_are_asked_for_in_each_endpoints_terms() {
        let p = Prompt::Text("hi".into());
        let b = body(&model(Endpoint::Completions), &Sampling::default(), &p, 1, 0, Some(3));
        assert_eq!((&b["logprobs"], b.get("top_logprobs")), (&json!(3), None), "legacy: the number of alternatives");
        let b = body(&model(Endpoint::Chat), &Sampling::default(), &p, 1, 0, Some(0));
        assert_eq!((&b["logprobs"], &b["top_logprobs"]), (&json!(true), &json!(1)), "llama-server sends none for 0");
    }

    /// A `/v1/completions` answer with `logprobs: 2` in the legacy format, as
    /// vLLM's protocol types write it (written from them, not captured: no
    /// vLLM runs here). The alternatives are a map in the server's order,
    /// not by rank.
    const VLLM_LEGACY: &str = r#"{"id":"cmpl-9f","object":"text_completion","created":1764590000,"model":"Qwen/Qwen2.5-7B-Instruct",
        "choices":[{"index":0,"text":" 4.","logprobs":{"text_offset":[12,14],"token_logprobs":[-0.0123,-1.5],"tokens":[" 4","."],
        "top_logprobs":[{" 4":-0.0123," four":-4.61},{".":-1.5,"\n":-0.4}]},"finish_reason":"length","stop_reason":null}],
        "usage":{"prompt_tokens":5,"total_tokens":7,"completion_tokens":2}}"#;

    /// A `/v1/chat/completions` answer with `logprobs: true, top_logprobs: 2`
    /// in the chat format (OpenAI's shape, `bytes` included). llama-server's
    /// own answers, in the same format on both endpoints, are checked by the
    /// integration tests against the real server.
    const CHAT_FORMAT: &str = r#"{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hi!"},
        "logprobs":{"content":[{"token":"Hi","logprob":-0.31,"bytes":[72,105],"top_logprobs":[{"token":"Hello","logprob":-1.42,"bytes":[72]},{"token":"Hi","logprob":-0.31,"bytes":[72,105]}]},
        {"token":"!","logprob":-0.05,"bytes":[33],"top_logprobs":[{"token":"!","logprob":-0.05,"bytes":[33]},{"token":".","logprob":-3.2,"bytes":[46]}]}]}}],
        "usage":{"completion_tokens":2}}"#;

    /// llama-server's own answer on `/v1/completions` with `logprobs: 2`,
    /// captured from xllamacpp 2026.10.11549 serving SmolLM2-135M (`timings`
    /// cut): the chat format on the completions endpoint.
    const LLAMA_SERVER_COMPLETIONS: &str = r#"{"choices":[{"text":"11","index":0,"logprobs":{"content":[{"id":33,"token":"1","bytes":[49],"logprob":-1.5442739725112915,"top_logprobs":[{"id":33,"token":"1","bytes":[49],"logprob":-1.5442739725112915},{"id":35,"token":"3","bytes":[51],"logprob":-1.8215032815933228}]},{"id":33,"token":"1","bytes":[49],"logprob":-1.5426421165466309,"top_logprobs":[{"id":33,"token":"1","bytes":[49],"logprob":-1.5426421165466309},{"id":32,"token":"0","bytes":[48],"logprob":-1.7472167015075684}]}]},"finish_reason":"length"}],"created":1796142778,"model":"smollm2","system_fingerprint":"b0-unknown","object":"text_completion","usage":{"completion_tokens":2,"prompt_tokens":4,"total_tokens":6,"prompt_tokens_details":{"cached_tokens":3}},"id":"chatcmpl-cSXCS5V2epQCukwqLWbBXlD4L91uMy1D"}"#;

    #[test]
    fn both_log_prob_formats_parse_to_one() {
        let c = parse(Endpoint::Completions, LLAMA_SERVER_COMPLETIONS, 1, Some(2)).unwrap();
        let lp = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp.iter().map(|t| t.token.as_str()).collect::<String>(), c.choices[0].text);
        assert_eq!(lp[1].top_logprobs[1], TopLogprob { token: "0".into(), logprob: -1.7472167015075684 });
        let c = parse(Endpoint::Completions, VLLM_LEGACY, 1, Some(2)).unwrap();
        let lp = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp.len(), 2);
        assert_eq!((lp[0].token.as_str(), lp[0].logprob), (" 4", -0.0123));
        let top1: Vec<(&str, f64)> = lp[1].top_logprobs.iter().map(|t| (t.token.as_str(), t.logprob)).collect();
        assert_eq!(top1, [("\n", -0.4), (".", -1.5)], "most likely first, the sampled token included");
        let c = parse(Endpoint::Chat, CHAT_FORMAT, 1, Some(2)).unwrap();
        let lp = c.choices[0].logprobs.as_ref().unwrap();
        assert_eq!(lp.iter().map(|t| t.token.as_str()).collect::<String>(), "Hi!");
        assert_eq!(lp[0].top_logprobs[0].token, "Hi", "sorted: the server listed Hello first");
        assert_eq!(lp[1].top_logprobs.len(), 2);
        // Not asked for: not kept, even when the server sent them; fewer
        // alternatives than sent: the most likely ones.
        assert_eq!(parse(Endpoint::Chat, CHAT_FORMAT, 1, None).unwrap().choices[0].logprobs, None);
        let one = parse(Endpoint::Chat, CHAT_FORMAT, 1, Some(1)).unwrap().choices[0].logprobs.clone().unwrap();
        assert_eq!(one[0].top_logprobs, [TopLogprob { token: "Hi".into(), logprob: -0.31 }]);
        let none = parse(Endpoint::Chat, CHAT_FORMAT, 1, Some(0)).unwrap().choices[0].logprobs.clone().unwrap();
        assert!(none.iter().all(|t| t.top_logprobs.is_empty()) && none.len() == 2);
    }

    #[test]
    fn missing_or_malformed_log_probs_are_errors() {
        let plain = r#"{"choices":[{"text":"a","index":0,"finish_reason":"stop","logprobs":null}]}"#;
        assert!(parse(Endpoint::Completions, plain, 1, Some(0)).unwrap_err().contains("no `logprobs`"));
        let short = r#"{"tokens":["a","b"],"token_logprobs":[-1.0]}"#;
        assert!(read_logprobs(&serde_json::from_str(short).unwrap()).unwrap_err().contains("2 tokens but 1"));
        let null = r#"{"tokens":["a"],"token_logprobs":[null]}"#;
        assert!(read_logprobs(&serde_json::from_str(null).unwrap()).unwrap_err().contains("token_logprobs[0]"));
        let other = r#"{"probs":[]}"#;
        assert!(read_logprobs(&serde_json::from_str(other).unwrap()).unwrap_err().contains("neither"));
        let no_token = r#"{"content":[{"logprob":-1.0}]}"#;
        assert!(read_logprobs(&serde_json::from_str(no_token).unwrap()).unwrap_err().contains("token 0"));
    }

    #[test]
    fn responses_of_both_endpoints_parse_in_index_order() {
        let r = r#"{"choices":[{"text":"b","index":1,"finish_reason":"length"},{"text":"a","index":0,"finish_reason":"stop"}],"usage":{"completion_tokens":9}}"#;
        let c = parse(Endpoint::Completions, r, 2, None).unwrap();
        assert_eq!(c.choices[0], Choice { text: "a".into(), finish_reason: "stop".into(), logprobs: None });
        assert_eq!(c.tokens, Some(9));
        let r = r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"index":0,"finish_reason":"stop"}]}"#;
        assert_eq!(parse(Endpoint::Chat, r, 1, None).unwrap().choices[0].text, "hi");
        assert!(parse(Endpoint::Chat, r, 2, None).unwrap_err().contains("asked for 2"));
        assert!(parse(Endpoint::Completions, "<html>", 1, None).unwrap_err().contains("not JSON"));
    }

    #[test]
    fn server_messages_and_n_caps_are_read() {
        let llama = r#"{"error":{"code":400,"message":"Field 'n': Value must be between 1 <= value <= 2, but got 3","type":"invalid_request_error"}}"#;
        let msg = error_message(llama);
        assert!(msg.starts_with("Field 'n'"), "{msg}");
        assert_eq!(n_cap(&msg, 3), Some(2));
        assert_eq!(n_cap("n must be at most 4", 8), Some(4));
        assert_eq!(n_cap("`n` is too large", 8), Some(4));
        assert_eq!(n_cap("prompt is too long", 8), None);
        assert_eq!(n_cap(&msg, 1), None);
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_message("plain text\n"), "plain text");
    }
}
