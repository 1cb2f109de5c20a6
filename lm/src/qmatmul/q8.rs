//! 8-bit activations against block weights: llama.cpp's arithmetic.
//!
//! Decoding one stream is mostly unpacking weight blocks to f32, one f32
//! multiply-add per weight. With the activation row quantized to 8 bits per
//! block of 32 (once per product, `d = max|x| / 127`, as llama.cpp's Q8_1),
//! each block's dot product runs on integers: AVX-512 VNNI's `vpdpbusd`
//! does 64 byte multiply-adds per instruction, and floats come in once per
//! block (`dw·dx·Σ qw·qx`, plus `mw·dx·Σ qx` for Q4_1's minimum).
//!
//! The activations' rounding moves the results off the f32 model's (as
//! llama.cpp's are), so this is a mode a model opts into
//! ([`crate::packed::PackedModel::set_q8_activations`]), not the default:
//! the golden tests hold the default to transformers' f32 outputs.
//!
//! Every activation row is reduced in the same order whatever the number of
//! rows in the product, so a sequence decodes the same bits alone or in a
//! batch.

use super::{QMatrix, Row};
use crate::quant::GgmlType;

/// Activation rows quantized to 8 bits in blocks of 32.
#[derive(Debug, Clone)]
pub(super) struct Q8Rows {
    pub(super) cols: usize,
    /// `[m * cols / 32]`: each block's `d`.
    pub(super) scales: Vec<f32>,
    /// `[m * cols / 32]`: each block's `d · Σ q` (Q4_1's minimum term and
    /// Q4_0's offset of 8).
    pub(super) sums: Vec<f32>,
    /// `[m, cols]`, in the order the weight type's kernel reads (see
    /// [`Layout`]).
    pub(super) quants: Vec<i8>,
    /// `[m, cols / 64, 16]`: each block pair's two scales spread over the
    /// 32-bit lanes that sum its products ([`lane_blocks`]), so the SIMD
    /// kernel reads them with one load.
    pub(super) lane_scales: Vec<f32>,
}

/// The order of the quants within each pair of blocks. A 4-bit weight pair
/// unpacks (low nibbles, then high nibbles) to elements
/// `[b0 0..16, b1 0..16, b0 16..32, b1 16..32]`, so the activations are
/// stored that way and the kernel needs no shuffle; 8-bit weights are in
/// natural order. A last unpaired block is always natural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    Natural,
    Nibbles,
}

/// Which block of a pair (0 or 1) each of the 16 32-bit lanes of a
/// 64-byte product sums, in this layout.
pub(super) fn lane_blocks(layout: Layout) -> [i32; 16] {
    std::array::from_fn(|l| match layout {
        Layout::Natural => (l / 8) as i32,
        Layout::Nibbles => (l / 4 % 2) as i32,
    })
}

impl Layout {
    pub(super) fn for_type(dtype: GgmlType) -> Self {
        if dtype == GgmlType::Q8_0 {
            Layout::Natural
        } else {
            Layout::Nibbles
        }
    }

    /// Where element `k` of a row (of `cols`) goes.
    fn position(self, k: usize, cols: usize) -> usize {
        let (b, j) = (k / 32, k % 32);
        let paired = b / 2 * 2 + 1 < cols / 32;
        if self == Layout::Natural || !paired {
            return k;
        }
        let base = b / 2 * 64;
        let second = b % 2;
        base + (j / 16) * 32 + second * 16 + j % 16
    }
}

/// Quantizes `x`, `[m, cols]` row-major, per block of 32: `q = round(x / d)`
/// with `d = max|x| / 127` (all zeros for an all-zero block).
pub(super) fn quantize(x: &[f32], m: usize, cols: usize, layout: Layout) -> Q8Rows {
    assert_eq!(x.len(), m * cols);
    assert_eq!(cols % 32, 0);
    let nb = m * cols / 32;
    let mut out = Q8Rows {
        cols,
        scales: Vec::with_capacity(nb),
        sums: Vec::with_capacity(nb),
        quants: vec![0; m * cols],
        lane_scales: Vec::with_capacity(m * (cols / 64) * 16),
    };
    let lanes = lane_blocks(layout);
    for (i, row) in x.chunks_exact(cols).enumerate() {
        let q_row = &mut out.quants[i * cols..(i + 1) * cols];
        for (b, block) in row.chunks_exact(32).enumerate() {
            let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let mut qsum = 0i32;
            for (j, &v) in block.iter().enumerate() {
                let q = (v * id).round().clamp(-127.0, 127.0) as i8;
                qsum += q as i32;
                q_row[layout.position(b * 32 + j, cols)] = q;
            }
            out.scales.push(d);
            out.sums.push(d * qsum as f32);
        }
        let row_scales = &out.scales[i * (cols / 32)..];
        for p in 0..cols / 64 {
            out.lane_scales.extend(lanes.iter().map(|&l| row_scales[2 * p + l as usize]));
        }
    }
    out
}

impl QMatrix {
    /// `y = x @ selfᵀ` with `x` quantized to 8 bits per block (llama.cpp's
    /// arithmetic; see the module doc). For decoding: up to
    /// [`super::MAX_ROWS`] rows per pass over a weight row.
    pub fn matmul_q8(&self, x: &[f32], m: usize) -> Vec<f32> {
        let xq = quantize(x, m, self.cols, Layout::for_type(self.dtype));
        self.by_weight_rows(m, |r0, y| {
            for (k, yr) in y.chunks_mut(m).enumerate() {
                self.row_dot_q8(r0 + k, &xq, yr);
            }
        })
    }

    /// `y[i] = dot(row r, activation row i)` for every row of `xq`.
    pub(super) fn row_dot_q8(&self, r: usize, xq: &Q8Rows, y: &mut [f32]) {
        let row = self.row(r);
        #[cfg(target_arch = "x86_64")]
        {
            if vnni() {
                for (start, ys) in (0..y.len()).step_by(super::MAX_ROWS).zip(y.chunks_mut(super::MAX_ROWS)) {
                    // SAFETY: AVX-512F/BW/VL and VNNI are available (checked);
                    // `xq` is laid out for this weight type and holds the rows.
                    unsafe { super::avx512::row_dot_q8(&row, xq, start, ys) };
                }
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: AVX2 and FMA are available (checked).
                unsafe { row_dot_q8_avx2(&row, xq, 0, y) };
                return;
            }
        }
        row_dot_q8_scalar(&row, xq, 0, y);
    }
}

/// Whether this CPU has the AVX-512 kernels' features.
#[cfg(target_arch = "x86_64")]
pub(super) fn vnni() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    })
}

/// The integer dot product of block `b` of `row` with activation row `a`'s
/// block `b`, and that block's float contribution. The portable kernel, and
/// the reference for the SIMD one (same integers; floats summed in another
/// order).
pub(super) fn block_dot(row: &Row<'_>, xq: &Q8Rows, a: usize, b: usize) -> f32 {
    let nb = xq.cols / 32;
    let layout = Layout::for_type(row.dtype);
    let xrow = &xq.quants[a * xq.cols..(a + 1) * xq.cols];
    let x = |j: usize| xrow[layout.position(b * 32 + j, xq.cols)] as i32;
    let (dx, blk) = (xq.scales[a * nb + b], a * nb + b);
    let dw = row.scales[b];
    match row.dtype {
        GgmlType::Q8_0 => {
            let isum: i32 = (0..32)
                .map(|j| row.quants[b * 32 + j] as i8 as i32 * x(j))
                .sum();
            dw * dx * isum as f32
        }
        dtype => {
            let q = &row.quants[b * 16..b * 16 + 16];
            let isum: i32 = (0..16)
                .map(|j| (q[j] & 0xF) as i32 * x(j) + (q[j] >> 4) as i32 * x(j + 16))
                .sum();
            if dtype == GgmlType::Q4_0 {
                dw * dx * isum as f32 + dw * (-8.0 * xq.sums[blk])
            } else {
                dw * dx * isum as f32 + row.mins[b] * xq.sums[blk]
            }
        }
    }
}

/// Portable kernel: activation rows `first..first + y.len()` of `xq`.
pub(super) fn row_dot_q8_scalar(row: &Row<'_>, xq: &Q8Rows, first: usize, y: &mut [f32]) {
    for (i, y) in y.iter_mut().enumerate() {
        *y = (0..xq.cols / 32)
            .map(|b| block_dot(row, xq, first + i, b))
            .sum();
    }
}

/// The AVX2 kernel (machines without AVX-512 VNNI): one block per step,
/// `maddubs` and `madd` for the integer sums, as llama.cpp's AVX2 path.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `xq` is laid out for `row.dtype`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn row_dot_q8_avx2(row: &Row<'_>, xq: &Q8Rows, first: usize, ys: &mut [f32]) {
    use std::arch::x86_64::*;
    let (cols, nb) = (xq.cols, xq.cols / 32);
    let nibbles = Layout::for_type(row.dtype) == Layout::Nibbles;
    let (mask, ones) = (_mm_set1_epi8(0x0F), _mm256_set1_epi16(1));
    for (i, y) in ys.iter_mut().enumerate() {
        let a = first + i;
        let xrow = xq.quants.as_ptr().add(a * cols);
        let mut acc = _mm256_setzero_ps();
        let mut offset = 0f32;
        for b in 0..nb {
            // This block's 32 activations, in the order its weights unpack.
            let x = if nibbles && b / 2 * 2 + 1 < nb {
                let base = xrow.add(b / 2 * 64 + b % 2 * 16);
                _mm256_loadu2_m128i(base.add(32) as *const __m128i, base as *const __m128i)
            } else {
                _mm256_loadu_si256(xrow.add(b * 32) as *const __m256i)
            };
            let (w, x) = if row.dtype == GgmlType::Q8_0 {
                let w = _mm256_loadu_si256(row.quants.as_ptr().add(b * 32) as *const __m256i);
                (_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w))
            } else {
                let v = _mm_loadu_si128(row.quants.as_ptr().add(b * 16) as *const __m128i);
                let (lo, hi) = (_mm_and_si128(v, mask), _mm_and_si128(_mm_srli_epi16(v, 4), mask));
                (_mm256_set_m128i(hi, lo), x)
            };
            let isum = _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
            let blk = a * nb + b;
            let d = _mm256_set1_ps(row.scales[b] * xq.scales[blk]);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc);
            offset += match row.dtype {
                GgmlType::Q4_1 => row.mins[b] * xq.sums[blk],
                GgmlType::Q4_0 => row.scales[b] * (-8.0 * xq.sums[blk]),
                _ => 0.0,
            };
        }
        let h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        *y = _mm_cvtss_f32(h) + offset;
    }
}
