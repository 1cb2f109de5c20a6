//! Chat templates: the jinja in `tokenizer.chat_template`, rendered with
//! minijinja the way HF's `apply_chat_template` renders it with jinja2
//! (`trim_blocks`, `lstrip_blocks`, Python string methods such as `.strip()`,
//! `raise_exception`, `tojson`).

use serde::{Deserialize, Serialize};

/// One chat turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A ChatML template for models we train ourselves (no default system prompt).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Rendering a chat template failed.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("the tokenizer has no chat template")]
    NoTemplate,
    #[error("chat template does not parse: {0:#}")]
    Syntax(minijinja::Error),
    #[error("chat template failed: {0:#}")]
    Render(minijinja::Error),
}

/// Variables besides `messages` and `add_generation_prompt`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

/// Renders a chat template over `messages`.
pub fn render(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
) -> Result<String, ChatError> {
    render_with(
        template,
        messages,
        &RenderOptions {
            add_generation_prompt,
            ..Default::default()
        },
    )
}

/// Renders a chat template with `bos_token`/`eos_token` set as well.
pub fn render_with(
    template: &str,
    messages: &[ChatMessage],
    opts: &RenderOptions,
) -> Result<String, ChatError> {
    let mut env = minijinja::Environment::new();
    // jinja2 as HF configures it for chat templates.
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("default delimiters are valid");
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                msg,
            ))
        },
    );
    env.add_function("strftime_now", |_fmt: String| -> String {
        // Deterministic output matters more here than the date: renders go into
        // cache keys. Templates only use it for a "today is" line.
        "01 Jan 2025".to_string()
    });
    env.add_template("chat", template)
        .map_err(ChatError::Syntax)?;
    let tmpl = env.get_template("chat").map_err(ChatError::Syntax)?;
    let ctx = minijinja::context! {
        messages => minijinja::Value::from(minijinja::value::Serde(messages)),
        add_generation_prompt => opts.add_generation_prompt,
        bos_token => opts.bos_token.clone().unwrap_or_default(),
        eos_token => opts.eos_token.clone().unwrap_or_default(),
    };
    tmpl.render(ctx).map_err(ChatError::Render)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_inserts_default_system_prompt() {
        let out = render(SMOLLM2, &[ChatMessage::user("Hi there")], true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = render(
            SMOLLM2,
            &[ChatMessage::system("Be brief."), ChatMessage::user("Hi")],
            false,
        )
        .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn chatml() {
        let msgs = [ChatMessage::user("2+2"), ChatMessage::assistant("4")];
        assert_eq!(
            render(CHATML_TEMPLATE, &msgs, true).unwrap(),
            "<|im_start|>user\n2+2<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn python_methods_trim_blocks_and_raise() {
        let t = "{% for m in messages %}\n  {{ m.content.strip() | upper }}|{% if m.role == 'bad' %}{{ raise_exception('no ' ~ m.role) }}{% endif %}\n{% endfor %}{{ bos_token }}";
        let opts = RenderOptions {
            bos_token: Some("<s>".into()),
            ..Default::default()
        };
        assert_eq!(
            render_with(t, &[ChatMessage::user("  hi  ")], &opts).unwrap(),
            "  HI|<s>"
        );
        let err = render(t, &[ChatMessage::new("bad", "x")], false).unwrap_err();
        assert!(err.to_string().contains("no bad"), "{err}");
        assert!(matches!(
            render("{% if %}", &[], false),
            Err(ChatError::Syntax(_))
        ));
    }
}
