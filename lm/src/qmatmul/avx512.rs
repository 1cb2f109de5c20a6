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
