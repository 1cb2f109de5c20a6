//! Products of many rows on bf16 operands: what a scoring pass
//! ([`crate::score::Precision::Bf16`]) multiplies with.
//!
//! A scoring pass is thousands of rows through every weight, bound by
//! multiply-adds: f32 gemm's micro-kernel is ~80% of its time. AVX-512
//! BF16's `vdpbf16ps` does two multiply-adds per 32-bit lane where an f32
//! FMA does one, so rounding both operands to bf16 (8 significant bits,
//! ties to even) and summing the products in f32 runs the same product at
//! about twice the rate. The rounding moves each result by a few parts in
//! a thousand, so this is a mode a stage asks for, never the default.
//!
//! Every output sums its inner dimension in one fixed order (pairs of
//! elements, first to last), whatever the number of rows in the product, so
//! a row gives the same bits alone or in a batch, as the f32 path does.
//! Machines without AVX-512 BF16 multiply the same rounded values with f32
//! gemm: the same products, summed in another order.

use rayon::prelude::*;

use super::{QMatrix, GEMM_MIN_ROWS};

/// `x` rounded to the nearest bf16 (ties to even), as an f32.
pub fn round_bf16(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let b = x.to_bits();
    f32::from_bits(b.wrapping_add(0x7FFF + ((b >> 16) & 1)) & 0xFFFF_0000)
}

/// Two elements as the kernel reads them: element `2p` in the low half.
fn pair(lo: f32, hi: f32) -> u32 {
    (round_bf16(lo).to_bits() >> 16) | (round_bf16(hi).to_bits() & 0xFFFF_0000)
}

/// `row` as element pairs ([`pair`]), 32 elements per instruction where
/// the CPU converts them (`vcvtne2ps2bf16` rounds to nearest even, as
/// [`round_bf16`] does; it flushes subnormals, which no activation is).
pub(super) fn pack_row(row: &[f32], out: &mut [u32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if kernel_available() {
        // SAFETY: AVX-512F and BF16 are available (checked); 32 elements
        // are read and 16 pairs written per step, within both slices.
        unsafe { done = pack_row_avx512(row, out) };
    }
    for p in done..out.len() {
        out[p] = pair(row[2 * p], row[2 * p + 1]);
    }
}

/// `rows` (each `k` elements) as `[k / 2, width]` element pairs, row `r`
/// in column `r`: the micro-kernel's layout of an activation block or a
/// weight panel. Columns past the rows given keep what `out` held.
fn interleave<'a>(rows: impl Iterator<Item = &'a [f32]>, width: usize, out: &mut [u32]) {
    let mut pairs = Vec::new();
    for (r, row) in rows.enumerate() {
        pairs.resize(row.len() / 2, 0);
        pack_row(row, &mut pairs);
        for (p, &v) in pairs.iter().enumerate() {
            out[p * width + r] = v;
        }
    }
}

/// [`pack_row`]'s vector part; returns the pairs written.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16; `out` holds
/// `row.len() / 2` pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_row_avx512(row: &[f32], out: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let n = row.len() / 32;
    for i in 0..n {
        let (lo, hi) = (_mm512_loadu_ps(row.as_ptr().add(32 * i)), _mm512_loadu_ps(row.as_ptr().add(32 * i + 16)));
        let v: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(out.as_mut_ptr().add(16 * i) as *mut _, v);
    }
    16 * n
}

/// Activation rows per micro-kernel call.
const MR: usize = 8;
/// Weight rows per micro-kernel call (three 16-lane registers).
const NR: usize = 48;

/// Activations rounded to bf16 once, for every weight tile they meet.
pub(crate) struct Bf16Rows {
    m: usize,
    k: usize,
    /// The kernel's layout: `[⌈m / MR⌉, k / 2, MR]` element pairs (rows
    /// past `m` are zero).
    packed: Vec<u32>,
    /// The portable path's: `[max(m, GEMM_MIN_ROWS), k]`, rounded.
    rounded: Vec<f32>,
}

impl Bf16Rows {
    /// `x`, `[m, k]` row-major, rounded to bf16.
    pub(crate) fn new(x: &[f32], m: usize, k: usize) -> Self {
        Self::for_path(x, m, k, kernel_available())
    }

    /// [`Bf16Rows::new`] for the kernel or the portable path.
    pub(super) fn for_path(x: &[f32], m: usize, k: usize, kernel: bool) -> Self {
        assert_eq!(x.len(), m * k);
        assert_eq!(k % 2, 0);
        if !kernel {
            let mut rounded: Vec<f32> = x.par_iter().map(|&v| round_bf16(v)).collect();
            rounded.resize(m.max(GEMM_MIN_ROWS) * k, 0.0);
            return Self { m, k, packed: Vec::new(), rounded };
        }
        let kp = k / 2;
        let mut packed = vec![0u32; m.div_ceil(MR) * MR * kp];
        packed.par_chunks_mut(MR * kp).enumerate().for_each(|(ib, block)| {
            interleave(x[ib * MR * k..].chunks(k).take(MR.min(m - ib * MR)), MR, block);
        });
        Self { m, k, packed, rounded: Vec::new() }
    }
}

/// Whether this CPU runs the bf16 micro-kernel.
pub(super) fn kernel_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        return *HAS.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16"));
    }
    #[allow(unreachable_code)]
    false
}

/// A raw pointer to the output that panels write their own columns of.
struct Out(*mut f32);
// SAFETY: each task writes a disjoint set of columns (its panel's).
unsafe impl Sync for Out {}

impl QMatrix {
    /// `y = x · selfᵀ` on bf16 operands, `[m, rows]` (see the module doc).
    pub(crate) fn matmul_bf16(&self, x: &Bf16Rows) -> Vec<f32> {
        let mut out = vec![0f32; x.m * self.rows];
        self.product_bf16(x, 0, self.rows, &mut out);
        out
    }

    /// [`QMatrix::matmul_bf16`] a tile of weight rows at a time: `f(r0,
    /// product)` with `product = x · tileᵀ` as `[m, n]`, for an output head
    /// too large to hold for every row at once.
    pub(crate) fn matmul_tiles_bf16(&self, x: &Bf16Rows, mut f: impl FnMut(usize, &[f32])) {
        let tile = (((1 << 20) / self.cols).max(NR) / NR) * NR;
        let mut buf = Vec::new();
        for r0 in (0..self.rows).step_by(tile) {
            let n = tile.min(self.rows - r0);
            buf.clear();
            buf.resize(x.m * n, 0.0);
            self.product_bf16(x, r0, n, &mut buf);
            f(r0, &buf);
        }
    }

    /// Weight rows `r0..r0 + n` against `x` into `out`, `[m, n]`.
    fn product_bf16(&self, x: &Bf16Rows, r0: usize, n: usize, out: &mut [f32]) {
        assert_eq!(x.k, self.cols, "activation width");
        assert_eq!(out.len(), x.m * n);
        if x.m == 0 || n == 0 {
            return;
        }
        if x.packed.is_empty() {
            return self.product_bf16_portable(x, r0, n, out);
        }
        let (k, kp, m) = (self.cols, self.cols / 2, x.m);
        let dst = Out(out.as_mut_ptr());
        let dst = &dst;
        (0..n.div_ceil(NR)).into_par_iter().for_each(|jb| {
            let cols = NR.min(n - jb * NR);
            // This panel's weights, dequantized, then as the kernel reads them.
            let mut w = vec![0f32; NR * k];
            for c in 0..cols {
                self.dequantize_row(r0 + jb * NR + c, &mut w[c * k..(c + 1) * k]);
            }
            let mut panel = vec![0u32; kp * NR];
            interleave(w.chunks(k), NR, &mut panel);
            let mut tile = [[0f32; NR]; MR];
            for ib in 0..m.div_ceil(MR) {
                // SAFETY: the kernel's features were checked when `x` was
                // packed; `x.packed` holds block `ib` (`MR * kp` pairs) and
                // `panel` holds `kp * NR`.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    kernel(x.packed.as_ptr().add(ib * MR * kp), panel.as_ptr(), kp, &mut tile)
                };
                for (r, row) in tile.iter().enumerate().take(MR.min(m - ib * MR)) {
                    // SAFETY: row `ib·MR + r` < m and columns `jb·NR..+cols`
                    // < n lie in `out`; no other task writes these columns.
                    unsafe {
                        let at = dst.0.add((ib * MR + r) * n + jb * NR);
                        std::ptr::copy_nonoverlapping(row.as_ptr(), at, cols);
                    }
                }
            }
        });
    }

    /// [`QMatrix::product_bf16`] without the kernel: the rounded weights
    /// through f32 gemm.
    fn product_bf16_portable(&self, x: &Bf16Rows, r0: usize, n: usize, out: &mut [f32]) {
        let (k, m) = (self.cols, x.m);
        let m_eff = m.max(GEMM_MIN_ROWS);
        let mut w = vec![0f32; n * k];
        self.dequantize_rows(r0, &mut w);
        w.par_iter_mut().for_each(|v| *v = round_bf16(*v));
        let mut y = vec![0f32; m_eff * n];
        super::gemm_xwt(&x.rounded, m_eff, &w, n, k, &mut y, n);
        out.copy_from_slice(&y[..m * n]);
    }
}

/// `tile = a · bᵀ` for one block of [`MR`] activation rows and one panel
/// of [`NR`] weight rows: `a` is `[kp, MR]` and `b` `[kp, NR]` element
/// pairs. Each output sums its pairs first to last.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512 BF16; `a` and `b` hold
/// `kp · MR` and `kp · NR` pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(a: *const u32, b: *const u32, kp: usize, tile: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 3]; MR];
    for p in 0..kp {
        let bp = b.add(p * NR);
        let bv = |q: usize| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(bp.add(16 * q) as *const _)) };
        let (b0, b1, b2) = (bv(0), bv(1), bv(2));
        let ap = a.add(p * MR);
        for (r, acc) in acc.iter_mut().enumerate() {
            let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32));
            acc[0] = _mm512_dpbf16_ps(acc[0], av, b0);
            acc[1] = _mm512_dpbf16_ps(acc[1], av, b1);
            acc[2] = _mm512_dpbf16_ps(acc[2], av, b2);
        }
    }
    for (row, acc) in tile.iter_mut().zip(&acc) {
        for (q, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(row.as_mut_ptr().add(16 * q), *v);
        }
    }
}
