//! Sampling many items through a remote model: a pool of workers, each
//! taking the next prompt's missing samples and asking for them in one
//! request (`n` of them, split when the server caps `n`). Results come back
//! to the calling thread, which stores each in the item cache as it
//! arrives, so a run that fails or is killed keeps every finished item.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::anyhow;
use retort_engine::StageCtx;

use super::client::{Client, RequestError};
use super::wire;
use crate::common::sampler::{item_id, Item, Put, Sampled};
use crate::common::sampling::Sampling;

/// Samples `items[i]` for every `i` in `todo` (in prompt order), handing
/// each result to `put`; the first request that still fails after its
/// retries stops the pool and is the error. `logprobs: Some(top)` asks for
/// each token's log-prob and `top` alternatives.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    client: &Client,
    ctx: &StageCtx<'_>,
    sampling: &Sampling,
    seed: u64,
    logprobs: Option<usize>,
    items: &[Item],
    todo: &[usize],
    total: u64,
    put: &mut Put<'_>,
) -> anyhow::Result<()> {
    let groups = groups(items, todo);
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<anyhow::Result<Vec<(usize, Sampled)>>>();
    let workers = client.spec.max_concurrency.min(groups.len()).max(1);
    let mut first_error = None;
    std::thread::scope(|s| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (groups, next, stop) = (&groups, &next, &stop);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(group) = groups.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let result = sample_group(client, &Ask { sampling, seed, logprobs }, items, group);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for result in rx {
            let stored = result.and_then(|list| {
                let mut done = 0;
                for (i, sampled) in list {
                    done = put(i, sampled)?;
                }
                Ok(done)
            });
            match stored {
                Ok(done) => ctx.progress(done, Some(total), &progress_unit(client)),
                Err(e) => {
                    stop.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Runs of `todo` that share a prompt: asked for in one request each.
fn groups(items: &[Item], todo: &[usize]) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    for &i in todo {
        match out.last_mut() {
            Some(g) if items[g[0]].prompt == items[i].prompt => g.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

/// What every request of a stage asks with.
struct Ask<'a> {
    sampling: &'a Sampling,
    seed: u64,
    logprobs: Option<usize>,
}

/// Asks for one group's samples, in as many requests as the server's cap
/// on `n` needs; the seed of a request is derived from its first item, so
/// the same run asks the same questions.
fn sample_group(client: &Client, ask: &Ask<'_>, items: &[Item], group: &[usize]) -> anyhow::Result<Vec<(usize, Sampled)>> {
    let mut out = Vec::with_capacity(group.len());
    let mut rest = group;
    while !rest.is_empty() {
        let n = rest.len().min(client.n_cap.load(Ordering::Relaxed)).max(1);
        let head = &items[rest[0]];
        let request_seed = server_seed(ask.seed, item_id(head));
        let body = wire::body(&client.spec, ask.sampling, &head.prompt, n, request_seed, ask.logprobs);
        let text = match client.post(&body) {
            Ok(text) => text,
            Err(RequestError::Status { status: 400, message, .. }) if wire::n_cap(&message, n).is_some() => {
                client.n_cap.fetch_min(wire::n_cap(&message, n).expect("checked"), Ordering::Relaxed);
                continue;
            }
            Err(e) => return Err(give_up(client, head, e)),
        };
        let parsed = wire::parse(client.spec.endpoint, &text, n, ask.logprobs)
            .map_err(|m| anyhow!("row {} (sample {}): {}", head.row, head.sample_index, client.redact(format!("unexpected response: {m}"))))?;
        let tokens = parsed.tokens.unwrap_or(0);
        client.stats.tokens.fetch_add(tokens as u64, Ordering::Relaxed);
        for (k, choice) in parsed.choices.into_iter().enumerate() {
            // Servers report usage per request; split it over its samples,
            // unless the log-probs count each sample's tokens.
            let share = tokens / n + usize::from(k < tokens % n);
            let tokens = choice.logprobs.as_ref().map_or(share, Vec::len);
            let sampled = Sampled { response: choice.text, tokens, finish_reason: choice.finish_reason, seed: request_seed, logprobs: choice.logprobs };
            out.push((rest[k], sampled));
        }
        rest = &rest[n..];
    }
    Ok(out)
}

fn give_up(client: &Client, head: &Item, e: RequestError) -> anyhow::Error {
    let retried = if e.retryable() { format!(" (still failing after {} retries)", client.spec.max_retries) } else { String::new() };
    anyhow!("row {} (sample {}): request to {e}{retried}", head.row, head.sample_index)
}

/// The seed sent to the server: from the stage's seed and the item's id,
/// kept below 2^31 because servers read it as a signed or 32-bit integer.
fn server_seed(seed: u64, item: u64) -> u64 {
    let h = blake3::hash(format!("{seed}\u{0}{item}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes")) & 0x7fff_ffff
}

/// `samples (12.0 req/s, 850 tok/s, 2 retries, 3 errors)`.
fn progress_unit(client: &Client) -> String {
    let secs = client.started.elapsed().as_secs_f64().max(1e-3);
    let s = &client.stats;
    let (req, tok) = (s.requests.load(Ordering::Relaxed), s.tokens.load(Ordering::Relaxed));
    format!(
        "samples ({:.1} req/s, {:.0} tok/s, {} retries, {} errors)",
        req as f64 / secs,
        tok as f64 / secs,
        s.retries.load(Ordering::Relaxed),
        s.errors.load(Ordering::Relaxed)
    )
}
