//! Rotary position embedding in HF's "rotate_half" layout: dimension `i`
//! of a head pairs with `i + head_dim / 2`.
//!
//! GGUF files from llama.cpp's converter store `attn_q`/`attn_k` rows
//! permuted for ggml's interleaved pairs; the loader undoes that
//! permutation (see `weights::unpermute_rows`), so one RoPE serves both.

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Precomputed `cos`/`sin` tables, `[max_positions, head_dim]`, both
/// halves of each row equal (`cos(p * inv_freq[i % (head_dim / 2)])`).
#[derive(Module, Debug)]
pub(crate) struct RotaryEmbedding {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

/// `cos`/`sin` gathered for one batch's positions.
///
/// # Shapes
/// - `cos`, `sin`: `[batch, seq, 1, head_dim]`
#[derive(Debug, Clone)]
pub(crate) struct RopeAt {
    pub cos: Tensor<4>,
    pub sin: Tensor<4>,
}

/// The rotation tables as host vectors, computed like transformers does:
/// `inv_freq` and the angle `p * inv_freq` in f32, `cos`/`sin` of that.
pub(crate) fn rope_tables(theta: f64, head_dim: usize, max_pos: usize) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(max_pos * head_dim);
    let mut sin = Vec::with_capacity(max_pos * head_dim);
    for p in 0..max_pos {
        for j in 0..head_dim {
            let angle = (p as f32 * inv_freq[j % half]) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

impl RotaryEmbedding {
    pub fn new(theta: f64, head_dim: usize, max_pos: usize, device: &Device) -> Self {
        let (cos, sin) = rope_tables(theta, head_dim, max_pos);
        let t = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [max_pos, head_dim]), device);
        Self {
            cos: t(cos),
            sin: t(sin),
        }
    }

    /// Gathers the tables at `positions`.
    ///
    /// # Shapes
    /// - `positions`: `[batch, seq]`
    pub fn at(&self, positions: Tensor<2, Int>) -> RopeAt {
        let [batch, seq] = positions.dims();
        let head_dim = self.cos.dims()[1];
        let flat = positions.reshape([batch * seq]);
        let gather = |t: &Tensor<2>| {
            t.clone()
                .select(0, flat.clone())
                .reshape([batch, seq, 1, head_dim])
        };
        RopeAt {
            cos: gather(&self.cos),
            sin: gather(&self.sin),
        }
    }
}

impl RopeAt {
    /// Rotates `x`: `x * cos + rotate_half(x) * sin`, where
    /// `rotate_half([x1, x2]) = [-x2, x1]`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, heads, head_dim]`
    /// - output: `[batch, seq, heads, head_dim]`
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let half = x.dims()[3] / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, tensor4};

    /// Naive RoPE on one head vector at position `p`.
    fn naive(x: &[f32], p: usize, theta: f64) -> Vec<f32> {
        let d = x.len();
        let mut out = vec![0.0; d];
        for i in 0..d / 2 {
            let freq = 1.0 / theta.powf(2.0 * i as f64 / d as f64);
            let (s, c) = (p as f64 * freq).sin_cos();
            let (a, b) = (x[i] as f64, x[i + d / 2] as f64);
            out[i] = (a * c - b * s) as f32;
            out[i + d / 2] = (a * s + b * c) as f32;
        }
        out
    }

    #[test]
    fn matches_naive_rotation_at_given_positions() {
        let dev = device();
        let (batch, seq, heads, hd) = (2, 3, 2, 8);
        let rope = RotaryEmbedding::new(10_000.0, hd, 64, &dev);
        let x: Vec<f32> = (0..batch * seq * heads * hd).map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0).collect();
        let positions = [[0i32, 1, 2], [5, 17, 40]];
        let pos = Tensor::<2, Int>::from_data(TensorData::new(positions.concat(), [batch, seq]), &dev);
        let out = rope.at(pos).apply(tensor4(&x, [batch, seq, heads, hd], &dev));
        let out = out.into_data().try_to_vec::<f32>().unwrap();
        for (b, row) in positions.iter().enumerate() {
            for (s, &p) in row.iter().enumerate() {
                for h in 0..heads {
                    let at = ((b * seq + s) * heads + h) * hd;
                    let want = naive(&x[at..at + hd], p as usize, 10_000.0);
                    assert_close(&out[at..at + hd], &want, 1e-5);
                }
            }
        }
    }
}
