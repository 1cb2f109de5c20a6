//! AVX-512 kernels for [`super::QMatrix`] (x86_64, picked at run time).

use std::arch::x86_64::*;

use super::{Row, MAX_ROWS, PAIR_ROWS};
use crate::quant::GgmlType;

/// The 32 weights of block `b` as two vectors (elements 0..16, 16..32).
#[inline(always)]
unsafe fn dequant(row: &Row<'_>, b: usize) -> (__m512, __m512) {
    let d = _mm512_set1_ps(*row.scales.get_unchecked(b));
    match row.dtype {
        GgmlType::Q8_0 => {
            let p = row.quants.as_ptr().add(b * 32) as *const __m128i;
            let lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p)));
            let hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(1))));
            (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
        }
        dtype => {
            let q = _mm512_cvtepu8_epi32(_mm_loadu_si128(row.quants.as_ptr().add(b * 16) as *const __m128i));
            let mask = _mm512_set1_epi32(0xF);
            let lo = _mm512_and_si512(q, mask);
            let hi = _mm512_srli_epi32(q, 4);
            if dtype == GgmlType::Q4_0 {
                let eight = _mm512_set1_epi32(8);
                let lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, eight));
                let hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, eight));
                (_mm512_mul_ps(lo, d), _mm512_mul_ps(hi, d))
            } else {
                let m = _mm512_set1_ps(*row.mins.get_unchecked(b));
                let lo = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(lo), d), m);
                let hi = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(hi), d), m);
                (lo, hi)
            }
        }
    }
}

/// # Safety
/// The CPU must support AVX-512F; `xs` holds `ys.len()` rows of `cols`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn row_dot(row: &Row<'_>, xs: &[f32], cols: usize, ys: &mut [f32]) {
    let n = ys.len();
    debug_assert!(n <= MAX_ROWS && xs.len() >= n * cols);
    let mut acc = [_mm512_setzero_ps(); MAX_ROWS];
    let mut acc2 = _mm512_setzero_ps(); // second chain for one row: hides FMA latency
    let x = xs.as_ptr();
    for b in 0..cols / 32 {
        let (lo, hi) = dequant(row, b);
        if n == 1 {
            acc[0] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(x.add(b * 32)), acc[0]);
            acc2 = _mm512_fmadd_ps(hi, _mm512_loadu_ps(x.add(b * 32 + 16)), acc2);
            continue;
        }
        for (i, acc) in acc.iter_mut().enumerate().take(n) {
            let xi = x.add(i * cols + b * 32);
            let a = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xi), *acc);
            *acc = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xi.add(16)), a);
        }
    }
    acc[0] = _mm512_add_ps(acc[0], acc2);
    for i in 0..n {
        ys[i] = _mm512_reduce_add_ps(acc[i]);
    }
}

/// Two weight rows against up to [`PAIR_ROWS`] activation rows.
///
/// # Safety
/// As [`row_dot`]; `ya` and `yb` have the same length.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn row_dot2(a: &Row<'_>, b: &Row<'_>, xs: &[f32], cols: usize, ya: &mut [f32], yb: &mut [f32]) {
    let n = ya.len();
    debug_assert!(n <= PAIR_ROWS && yb.len() == n && xs.len() >= n * cols);
    let mut acc_a = [_mm512_setzero_ps(); PAIR_ROWS];
    let mut acc_b = [_mm512_setzero_ps(); PAIR_ROWS];
    let x = xs.as_ptr();
    for blk in 0..cols / 32 {
        let (a_lo, a_hi) = dequant(a, blk);
        let (b_lo, b_hi) = dequant(b, blk);
        for i in 0..n {
            let xi = x.add(i * cols + blk * 32);
            let (x_lo, x_hi) = (_mm512_loadu_ps(xi), _mm512_loadu_ps(xi.add(16)));
            acc_a[i] = _mm512_fmadd_ps(a_hi, x_hi, _mm512_fmadd_ps(a_lo, x_lo, acc_a[i]));
            acc_b[i] = _mm512_fmadd_ps(b_hi, x_hi, _mm512_fmadd_ps(b_lo, x_lo, acc_b[i]));
        }
    }
    for i in 0..n {
        ya[i] = _mm512_reduce_add_ps(acc_a[i]);
        yb[i] = _mm512_reduce_add_ps(acc_b[i]);
    }
}

/// [`super::q8`]'s kernel: weight row `row` against activation rows
/// `first..first + ys.len()` of `xq`, in groups of up to 4 rows whose
/// accumulators stay in registers (an array indexed at run time lives on
/// the stack, and every block pair then waits for a store to come back).
/// Each activation row is reduced in the same order whatever the group.
///
/// # Safety
/// The CPU must support AVX-512F, BW, VL and VNNI; `xq` is laid out for
/// `row.dtype` ([`super::q8::Layout::for_type`]) and holds the rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn row_dot_q8(row: &Row<'_>, xq: &super::q8::Q8Rows, first: usize, ys: &mut [f32]) {
    debug_assert!((first + ys.len()) * xq.cols <= xq.quants.len());
    for (g, ys) in ys.chunks_mut(4).enumerate() {
        let first = first + 4 * g;
        match ys.len() {
            1 => rows_q8::<1>(row, xq, first, ys),
            2 => rows_q8::<2>(row, xq, first, ys),
            3 => rows_q8::<3>(row, xq, first, ys),
            _ => rows_q8::<4>(row, xq, first, ys),
        }
    }
}

/// [`row_dot_q8`] for `N` activation rows, two blocks (64 weights) per step.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn rows_q8<const N: usize>(row: &Row<'_>, xq: &super::q8::Q8Rows, first: usize, ys: &mut [f32]) {
    let (cols, nb, pairs) = (xq.cols, xq.cols / 32, xq.cols / 64);
    let dtype = row.dtype;
    let lanes = super::q8::lane_blocks(super::q8::Layout::for_type(dtype));
    let lanes = _mm512_loadu_si512(lanes.as_ptr() as *const _);
    let nibble = _mm256_set1_epi8(0x0F);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); N];
    let (xs, x_scales, w_scales) = (xq.quants.as_ptr(), xq.lane_scales.as_ptr(), row.scales.as_ptr());
    for p in 0..pairs {
        // Both blocks' weights as 64 bytes in the activations' order.
        let (w, neg) = if dtype == GgmlType::Q8_0 {
            let w = _mm512_loadu_si512(row.quants.as_ptr().add(p * 64) as *const _);
            (_mm512_abs_epi8(w), _mm512_movepi8_mask(w))
        } else {
            let v = _mm256_loadu_si256(row.quants.as_ptr().add(p * 32) as *const __m256i);
            let lo = _mm256_and_si256(v, nibble);
            let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble);
            (_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), 0)
        };
        // The pair's two weight scales, each over its block's lanes.
        let pair_scales = _mm_castsi128_ps(_mm_loadl_epi64(w_scales.add(2 * p) as *const __m128i));
        let ws = _mm512_permutexvar_ps(lanes, _mm512_castps128_ps512(pair_scales));
        for (i, acc) in acc.iter_mut().enumerate() {
            let a = first + i;
            let mut x = _mm512_loadu_si512(xs.add(a * cols + p * 64) as *const _);
            if dtype == GgmlType::Q8_0 {
                // Signed × signed as unsigned × signed: |w| · (x with w's sign).
                x = _mm512_mask_sub_epi8(x, neg, zero, x);
            }
            let isum = _mm512_dpbusd_epi32(zero, w, x);
            let s = _mm512_mul_ps(ws, _mm512_loadu_ps(x_scales.add((a * pairs + p) * 16)));
            *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), s, *acc);
        }
    }
    // The per-block offset terms over the paired blocks, 16 blocks per step:
    // Q4_1's minimum (`mw · dx·Σq`), Q4_0's `-8 · dw · dx·Σq`.
    let paired = 2 * pairs;
    let (w_side, factor) = match dtype {
        GgmlType::Q4_1 => (row.mins.as_ptr(), 1.0),
        _ => (w_scales, -8.0),
    };
    for (i, y) in ys.iter_mut().enumerate() {
        let a = first + i;
        let mut total = _mm512_reduce_add_ps(acc[i]);
        if dtype != GgmlType::Q8_0 {
            let mut off = _mm512_setzero_ps();
            for b0 in (0..paired).step_by(16) {
                let k = (paired - b0).min(16);
                let mask: __mmask16 = if k == 16 { 0xFFFF } else { (1u16 << k) - 1 };
                let wv = _mm512_maskz_loadu_ps(mask, w_side.add(b0));
                let sv = _mm512_maskz_loadu_ps(mask, xq.sums.as_ptr().add(a * nb + b0));
                off = _mm512_fmadd_ps(wv, _mm512_mul_ps(sv, _mm512_set1_ps(factor)), off);
            }
            total += _mm512_reduce_add_ps(off);
        }
        if nb % 2 == 1 {
            total += super::q8::block_dot(row, xq, a, nb - 1);
        }
        *y = total;
    }
}
