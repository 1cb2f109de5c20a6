//! What goes over the wire: request bodies for `/completions` and
//! `/chat/completions`, and the parts of a response retort keeps.
//!
//! Servers differ in small ways this file absorbs: llama-server caps `n` at
//! its slots and answers 400 above that ([`n_cap`]); top_k and min_p are not
//! OpenAI fields but vLLM and llama-server take them, so they are sent only
//! when set.

use retort_engine::{Endpoint, OpenAiModel};
use serde_json::{json, Map, Value};

use crate::common::sampler::Prompt;
use crate::common::sampling::Sampling;

/// The JSON body of a request for `n` samples of `prompt`.
pub fn body(m: &OpenAiModel, sampling: &Sampling, prompt: &Prompt, n: usize, seed: u64) -> Value {
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
}

/// A parsed response: its choices in `index` order and the completion tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// One per requested sample.
    pub choices: Vec<Choice>,
    /// `usage.completion_tokens` (summed over the choices), when reported.
    pub tokens: Option<usize>,
}

/// Reads a response body of `endpoint` that should hold `n` choices.
pub fn parse(endpoint: Endpoint, text: &str, n: usize) -> Result<Completion, String> {
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
        indexed.push((index, Choice { text, finish_reason }));
    }
    if indexed.len() != n {
        return Err(format!("asked for {n} choices, got {}", indexed.len()));
    }
    indexed.sort_by_key(|(i, _)| *i);
    let tokens = v.pointer("/usage/completion_tokens").and_then(Value::as_u64).map(|t| t as usize);
    Ok(Completion { choices: indexed.into_iter().map(|(_, c)| c).collect(), tokens })
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
        let b = body(&model(Endpoint::Completions), &s, &Prompt::Text("hi".into()), 3, 7);
        assert_eq!(b["prompt"], "hi");
        assert_eq!(b["n"], 3);
        assert_eq!(b["seed"], 7);
        assert_eq!(b["stop"], json!(["\n"]));
        assert_eq!(b["max_tokens"], 256);
        assert_eq!(b["top_k"], 5, "extra_body wins");
        assert_eq!(b["repetition_penalty"], 1.1);
        assert!(b.get("min_p").is_none());
        let turns = Prompt::Chat(vec![ChatMessage::user("q")]);
        let b = body(&model(Endpoint::Chat), &Sampling::greedy(), &turns, 1, 0);
        assert_eq!(b["messages"], json!([{"role": "user", "content": "q"}]));
        assert!(b.get("stop").is_none() && b.get("prompt").is_none());
    }

    #[test]
    fn responses_of_both_endpoints_parse_in_index_order() {
        let r = r#"{"choices":[{"text":"b","index":1,"finish_reason":"length"},{"text":"a","index":0,"finish_reason":"stop"}],"usage":{"completion_tokens":9}}"#;
        let c = parse(Endpoint::Completions, r, 2).unwrap();
        assert_eq!(c.choices[0], Choice { text: "a".into(), finish_reason: "stop".into() });
        assert_eq!(c.tokens, Some(9));
        let r = r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"index":0,"finish_reason":"stop"}]}"#;
        assert_eq!(parse(Endpoint::Chat, r, 1).unwrap().choices[0].text, "hi");
        assert!(parse(Endpoint::Chat, r, 2).unwrap_err().contains("asked for 2"));
        assert!(parse(Endpoint::Completions, "<html>", 1).unwrap_err().contains("not JSON"));
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
