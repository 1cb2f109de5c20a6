//! `retort sample`: one prompt through a model, for checking a checkpoint or
//! a GGUF file by hand (and for the golden tests of issue 3).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use retort_lm::chat::ChatMessage;
use retort_lm::{generate, DeviceKind, GenerateRequest, LoadedModel, SamplingParams};

/// `retort sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A `.gguf` file or a checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as a user turn in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// Most new tokens.
    #[arg(long, default_value_t = 64)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Nucleus threshold.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, wgpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Decode with 8-bit activations and integer dot products, as llama.cpp
    /// does (a GGUF model on the CPU): llama.cpp's tokens, not the f32 model's.
    #[arg(long)]
    q8: bool,
    /// `human` prints the text; `json` prints {"prompt_tokens", "tokens", "text"}.
    #[arg(long, default_value = "human")]
    format: String,
}

/// Runs `retort sample`; bad input (not a model, a truncated file, an
/// unsupported tensor type or architecture) exits 2 with one message.
pub fn run(a: SampleArgs) -> ExitCode {
    match sample(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn sample(a: &SampleArgs) -> anyhow::Result<()> {
    let device = a.device.parse::<DeviceKind>()?;
    let mut lm = LoadedModel::load(&a.model, device)?;
    if a.q8 {
        anyhow::ensure!(
            lm.set_q8_activations(true),
            "--q8 needs a GGUF model with Q4_0, Q4_1 or Q8_0 weights on the CPU; {} has none: leave out --q8",
            a.model.display()
        );
    }
    let tok = lm.text_tokenizer()?;
    let text = if a.chat { tok.apply_chat_template(&[ChatMessage::user(&a.prompt)], true)? } else { a.prompt.clone() };
    let prompt = tok.encode(&text, false)?;
    anyhow::ensure!(!prompt.is_empty(), "the prompt is empty");
    let params = SamplingParams {
        max_new_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        ..SamplingParams::default()
    };
    let gen = generate(lm.model(), &GenerateRequest { prompts: std::slice::from_ref(&prompt), item_ids: &[0], params: &params, decode: None })?
        .pop()
        .expect("one prompt, one generation");
    let out = tok.decode(&gen.tokens);
    match a.format.as_str() {
        "json" => println!("{}", serde_json::json!({"prompt_tokens": prompt, "tokens": gen.tokens, "text": out})),
        _ => println!("{out}"),
    }
    Ok(())
}
