//! The checks before a run that samples a remote model: the key variable
//! is set, every base URL answers `/models`, and each serves the model.
//! Registered with the engine (`Registry::check_models_with`), which turns
//! a failure into one located error and exit 2 before any stage runs.

use retort_engine::OpenAiModel;
use serde_json::Value;

use super::client::{Client, RequestError};

/// Seconds the preflight waits for `/models`: a server that is up answers
/// at once, and a wrong address should not take the full request timeout.
const PREFLIGHT_TIMEOUT: f64 = 10.0;

/// `Err` says what is wrong and how to fix it, without the key.
pub fn check(m: &OpenAiModel) -> Result<(), String> {
    let quick = OpenAiModel { timeout: m.timeout.min(PREFLIGHT_TIMEOUT), ..m.clone() };
    let client = Client::new(&quick)?;
    for base in client.urls() {
        let url = format!("{base}/models");
        let text = client.get(&url).map_err(|e| describe(m, &e))?;
        let served = served_models(&text).ok_or_else(|| format!("{url} did not answer with a model list; is `{base}` the API root (it usually ends in /v1)?"))?;
        if !served.contains(&m.model) {
            let list = served.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
            return Err(format!("the server at {base} does not serve model `{}`; it serves {list}: fix `model`", m.model));
        }
    }
    Ok(())
}

fn describe(m: &OpenAiModel, e: &RequestError) -> String {
    match e {
        RequestError::Transport { url, message } => format!("cannot reach {url} ({message}): is the server running? Start it, or fix `base_url`"),
        RequestError::Status { url, status: status @ (401 | 403), message, .. } => {
            let var = m.api_key_env.as_deref().map_or("no key (set `api_key_env`)".to_string(), |v| format!("the key in `{v}`"));
            format!("{url} refused {var}: HTTP {status}: {message}")
        }
        other => format!("{other}"),
    }
}

/// Model ids (and llama-server's aliases) of a `/models` answer.
fn served_models(text: &str) -> Option<Vec<String>> {
    let v: Value = serde_json::from_str(text).ok()?;
    let data = v.get("data")?.as_array()?;
    let mut out = Vec::new();
    for entry in data {
        out.extend(entry.get("id").and_then(Value::as_str).map(str::to_string));
        for alias in entry.get("aliases").and_then(Value::as_array).into_iter().flatten() {
            out.extend(alias.as_str().map(str::to_string));
        }
    }
    out.dedup();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_of_vllm_and_llama_server_are_read() {
        let vllm = r#"{"object":"list","data":[{"id":"Qwen/Qwen2.5-7B-Instruct","object":"model"}]}"#;
        assert_eq!(served_models(vllm).unwrap(), ["Qwen/Qwen2.5-7B-Instruct"]);
        let llama = r#"{"data":[{"id":"m.gguf","aliases":["m.gguf","smol"]}]}"#;
        assert_eq!(served_models(llama).unwrap(), ["m.gguf", "smol"]);
        assert_eq!(served_models("<html>"), None);
    }

    #[test]
    fn a_missing_key_variable_is_named_and_a_dead_server_said_so() {
        let m: OpenAiModel = serde_json::from_value(serde_json::json!({
            "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "RETORT_TEST_UNSET_KEY_VAR"
        }))
        .unwrap();
        let e = check(&m).unwrap_err();
        assert!(e.contains("`RETORT_TEST_UNSET_KEY_VAR`") && e.contains("not set"), "{e}");
        let m = OpenAiModel { api_key_env: None, ..m };
        let e = check(&m).unwrap_err();
        assert!(e.contains("cannot reach http://127.0.0.1:9/v1/models") && e.contains("is the server running"), "{e}");
    }
}
