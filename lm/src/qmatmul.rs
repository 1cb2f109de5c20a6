//! CPU matrix products against weights kept in their GGUF block format.
//!
//! Decoding is bound by reading weights: a Q4_1 weight is 0.625 bytes
//! against 4 for f32. These kernels dequantize each block exactly as
//! [`crate::quant`] does (so the products equal the f32 model's up to
//! summation order) and multiply it with a few activation rows while it
//! is in registers. Prefill (many rows) stays on burn's f32 gemm.

use std::sync::Arc;

use rayon::prelude::*;

use crate::quant::GgmlType;

/// A `[rows, cols]` weight (`rows` outputs, `cols` inputs) in blocks of 32
/// along `cols`, repacked from ggml's array-of-structs layout into separate
/// f32 scales, f32 mins (Q4_1) and packed quants, so the kernels do no f16
/// conversions.
#[derive(Clone)]
pub struct QMatrix {
    dtype: GgmlType,
    rows: usize,
    cols: usize,
    /// `[rows * cols / 32]`
    scales: Vec<f32>,
    /// `[rows * cols / 32]` for Q4_1, empty otherwise.
    mins: Vec<f32>,
    /// 16 bytes (4-bit) or 32 bytes (8-bit) per block, ggml's order.
    quants: Vec<u8>,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix({}, {}x{})", self.dtype, self.rows, self.cols)
    }
}

/// Whether [`QMatrix`] has a kernel for this type.
pub fn supported(dtype: GgmlType) -> bool {
    matches!(dtype, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

fn quant_bytes(dtype: GgmlType) -> usize {
    if dtype == GgmlType::Q8_0 { 32 } else { 16 }
}

impl QMatrix {
    /// Repacks GGUF bytes of a `[rows, cols]` tensor.
    ///
    /// # Panics
    /// If the type has no kernel or the sizes disagree.
    pub fn new(dtype: GgmlType, rows: usize, cols: usize, data: &[u8]) -> Self {
        assert!(supported(dtype), "no kernel for {dtype}");
        assert_eq!(cols % 32, 0);
        let bb = dtype.block_bytes().expect("sized type");
        let n_blocks = rows * cols / 32;
        assert_eq!(data.len(), n_blocks * bb);
        let half = |b: &[u8], i: usize| half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        let qoff = if dtype == GgmlType::Q4_1 { 4 } else { 2 };
        let qb = quant_bytes(dtype);
        let mut m = Self {
            dtype,
            rows,
            cols,
            scales: Vec::with_capacity(n_blocks),
            mins: Vec::new(),
            quants: Vec::with_capacity(n_blocks * qb),
        };
        for b in data.chunks_exact(bb) {
            m.scales.push(half(b, 0));
            if dtype == GgmlType::Q4_1 {
                m.mins.push(half(b, 2));
            }
            m.quants.extend_from_slice(&b[qoff..qoff + qb]);
        }
        m
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / 32
    }

    /// Stacks matrices with the same type and width along the rows.
    pub fn vstack(parts: &[QMatrix]) -> Self {
        let first = &parts[0];
        assert!(parts.iter().all(|p| p.dtype == first.dtype && p.cols == first.cols));
        Self {
            dtype: first.dtype,
            rows: parts.iter().map(|p| p.rows).sum(),
            cols: first.cols,
            scales: parts.iter().flat_map(|p| p.scales.iter().copied()).collect(),
            mins: parts.iter().flat_map(|p| p.mins.iter().copied()).collect(),
            quants: parts.iter().flat_map(|p| p.quants.iter().copied()).collect(),
        }
    }

    /// Reorders rows: row `i` of the result is row `order[i]` of `self`.
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        let nb = self.blocks_per_row();
        let qr = nb * quant_bytes(self.dtype);
        let pick = |v: &[f32]| -> Vec<f32> {
            if v.is_empty() {
                return Vec::new();
            }
            order.iter().flat_map(|&r| v[r * nb..(r + 1) * nb].iter().copied()).collect()
        };
        Self {
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            scales: pick(&self.scales),
            mins: pick(&self.mins),
            quants: order.iter().flat_map(|&r| self.quants[r * qr..(r + 1) * qr].iter().copied()).collect(),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> GgmlType {
        self.dtype
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// `y = x @ selfᵀ` for `x: [m, cols]` row-major; returns `[m, rows]`.
    /// Up to [`MAX_ROWS`] rows use the block kernels (bound by reading the
    /// weights); more rows dequantize tiles of the weight and use gemm
    /// (bound by arithmetic).
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols);
        if m > MAX_ROWS {
            return self.matmul_gemm(x, m);
        }
        let mut yt = vec![0f32; self.rows * m]; // [rows, m]
        // A few tasks per thread balance load without much scheduling.
        let per_task = (self.rows / (4 * rayon::current_num_threads())).clamp(8, 256);
        yt.par_chunks_mut(per_task * m).enumerate().for_each(|(t, y)| {
            let r0 = t * per_task;
            let mut k = 0;
            let n_rows = y.len() / m;
            while k < n_rows {
                // Two weight rows per pass share each activation load.
                if k + 1 < n_rows && m > 1 {
                    let (ya, yb) = y[k * m..(k + 2) * m].split_at_mut(m);
                    self.row_dot2(r0 + k, x, ya, yb);
                    k += 2;
                } else {
                    self.row_dot(r0 + k, x, &mut y[k * m..(k + 1) * m]);
                    k += 1;
                }
            }
        });
        let mut out = vec![0f32; m * self.rows];
        for r in 0..self.rows {
            for i in 0..m {
                out[i * self.rows + r] = yt[r * m + i];
            }
        }
        out
    }

    /// [`QMatrix::matmul`] for many rows: weight tiles of about 4 MiB are
    /// dequantized and multiplied with gemm.
    fn matmul_gemm(&self, x: &[f32], m: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * self.rows];
        let tile = ((1 << 20) / self.cols).max(16);
        let mut scratch = vec![0f32; tile.min(self.rows) * self.cols];
        for r0 in (0..self.rows).step_by(tile) {
            let n = tile.min(self.rows - r0);
            let w = &mut scratch[..n * self.cols];
            self.dequantize_rows(r0, w);
            // SAFETY: out is [m, rows] (column stride 1, row stride rows),
            // x is [m, cols], w is [n, cols]; read as its transpose [cols, n].
            unsafe {
                gemm::gemm(
                    m,
                    n,
                    self.cols,
                    out.as_mut_ptr().add(r0),
                    1,
                    self.rows as isize,
                    false,
                    x.as_ptr(),
                    1,
                    self.cols as isize,
                    w.as_ptr(),
                    self.cols as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(rayon::current_num_threads()),
                );
            }
        }
        out
    }

    /// Rows `r0..r0 + out.len() / cols`, dequantized exactly as
    /// [`crate::quant`] does, into `out` (row-major).
    pub fn dequantize_rows(&self, r0: usize, out: &mut [f32]) {
        out.par_chunks_mut(self.cols)
            .enumerate()
            .for_each(|(i, row_out)| self.dequantize_row(r0 + i, row_out));
    }

    /// Row `r` dequantized into `out` (`[cols]`), on the calling thread.
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let row = self.row(r);
        let mut w = [0f32; 32];
        for (b, chunk) in out.chunks_exact_mut(32).enumerate() {
            dequant_block(&row, b, &mut w);
            chunk.copy_from_slice(&w);
        }
    }

    /// The whole matrix dequantized, `[rows, cols]` row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        self.dequantize_rows(0, &mut out);
        out
    }

    fn row(&self, r: usize) -> Row<'_> {
        let nb = self.blocks_per_row();
        let qb = quant_bytes(self.dtype);
        Row {
            dtype: self.dtype,
            scales: &self.scales[r * nb..(r + 1) * nb],
            mins: if self.mins.is_empty() { &[] } else { &self.mins[r * nb..(r + 1) * nb] },
            quants: &self.quants[r * nb * qb..(r + 1) * nb * qb],
        }
    }

    /// [`QMatrix::row_dot`] for rows `r` and `r + 1` at once.
    fn row_dot2(&self, r: usize, x: &[f32], ya: &mut [f32], yb: &mut [f32]) {
        let (a, b) = (self.row(r), self.row(r + 1));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            for (start, (ya, yb)) in (0..ya.len()).step_by(PAIR_ROWS).zip(ya.chunks_mut(PAIR_ROWS).zip(yb.chunks_mut(PAIR_ROWS))) {
                let xs = &x[start * self.cols..(start + ya.len()) * self.cols];
                // SAFETY: as in `row_dot`.
                unsafe { avx512::row_dot2(&a, &b, xs, self.cols, ya, yb) };
            }
            return;
        }
        self.row_dot(r, x, ya);
        self.row_dot(r + 1, x, yb);
    }

    /// `y[i] = dot(row r, x[i])` for every activation row `i`.
    fn row_dot(&self, r: usize, x: &[f32], y: &mut [f32]) {
        let row = self.row(r);
        for (start, ys) in (0..y.len()).step_by(MAX_ROWS).zip(y.chunks_mut(MAX_ROWS)) {
            let xs = &x[start * self.cols..(start + ys.len()) * self.cols];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is available (checked above); slices are
                // sized by construction (blocks of 32 along `cols`).
                unsafe { avx512::row_dot(&row, xs, self.cols, ys) };
                continue;
            }
            row_dot_scalar(&row, xs, self.cols, ys);
        }
    }
}

/// A model's weights on the host in block format, for CPU inference
/// ([`crate::host`]) and for the packed path of [`crate::model::Llama`]'s
/// forward pass. An inference cache: training must not use it.
#[derive(Debug, Clone)]
pub struct PackedModel {
    pub(crate) cfg: crate::config::LlamaConfig,
    /// `token_embd`, `[vocab, hidden]`: embedding rows, and the head when tied.
    pub(crate) embed: QMatrix,
    /// An untied output head, `[vocab, hidden]`.
    pub(crate) head: Option<QMatrix>,
    pub(crate) blocks: Vec<PackedBlock>,
    /// Final norm weight.
    pub(crate) norm: Vec<f32>,
    /// RoPE tables, `[max_positions, head_dim]`.
    pub(crate) rope_cos: Vec<f32>,
    pub(crate) rope_sin: Vec<f32>,
}

/// One decoder block's weights, fused like the model's (`qkv`, `gate_up`).
#[derive(Debug, Clone)]
pub(crate) struct PackedBlock {
    pub attn_norm: Vec<f32>,
    pub qkv: QMatrix,
    pub qkv_bias: Option<Vec<f32>>,
    pub o: QMatrix,
    pub mlp_norm: Vec<f32>,
    pub gate_up: QMatrix,
    pub down: QMatrix,
}

impl PackedModel {
    /// The output head.
    pub(crate) fn head(&self) -> &QMatrix {
        self.head.as_ref().unwrap_or(&self.embed)
    }
}

/// The packed copy of a model's weights as a field of the model. It is a
/// cache of the f32 parameters, so every burn transformation that may
/// change them or move them (an optimizer step or any other `map`,
/// `to_device`, `fork`, `train`) drops it; `clone` and `valid` keep it.
#[derive(Debug, Clone, Default)]
pub struct PackedSlot(pub(crate) Option<Arc<PackedModel>>);

impl burn::module::Module for PackedSlot {
    fn collect_devices(&self, devices: burn::module::Devices) -> burn::module::Devices {
        devices
    }

    fn fork(self, _device: &burn::tensor::Device) -> Self {
        Self(None)
    }

    fn to_device(self, _device: &burn::tensor::Device) -> Self {
        Self(None)
    }

    fn train(self) -> Self {
        Self(None)
    }

    fn valid(&self) -> Self {
        self.clone()
    }

    fn materialize(self) -> Self {
        self
    }

    fn visit<V: burn::module::ModuleVisitor>(&self, _visitor: &mut V) {}

    fn map<M: burn::module::ModuleMapper>(self, _mapper: &mut M) -> Self {
        Self(None)
    }
}

impl burn::module::ModuleDisplayDefault for PackedSlot {
    fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
        content.add_formatted(&if self.0.is_some() { "packed" } else { "none" }).optional()
    }
}

impl burn::module::ModuleDisplay for PackedSlot {}

/// One weight row's blocks.
struct Row<'a> {
    dtype: GgmlType,
    scales: &'a [f32],
    mins: &'a [f32],
    quants: &'a [u8],
}

/// Most activation rows handled in one pass over a weight row; more rows
/// go to [`QMatrix::matmul`]'s gemm path.
pub const MAX_ROWS: usize = 16;

/// Most activation rows handled in one pass over two weight rows (two
/// accumulators per activation row must fit in the 32 vector registers).
const PAIR_ROWS: usize = 8;

/// Block `b` of `row` dequantized exactly as [`crate::quant`] does.
#[inline(always)]
fn dequant_block(row: &Row<'_>, b: usize, w: &mut [f32; 32]) {
    let d = row.scales[b];
    match row.dtype {
        GgmlType::Q8_0 => {
            for (w, &q) in w.iter_mut().zip(&row.quants[b * 32..b * 32 + 32]) {
                *w = (q as i8) as f32 * d;
            }
        }
        GgmlType::Q4_0 => {
            for (j, &q) in row.quants[b * 16..b * 16 + 16].iter().enumerate() {
                w[j] = ((q & 0xF) as i32 - 8) as f32 * d;
                w[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
            }
        }
        _ => {
            let m = row.mins[b];
            for (j, &q) in row.quants[b * 16..b * 16 + 16].iter().enumerate() {
                w[j] = (q & 0xF) as f32 * d + m;
                w[j + 16] = (q >> 4) as f32 * d + m;
            }
        }
    }
}

/// Portable kernel (and the reference for the SIMD one).
fn row_dot_scalar(row: &Row<'_>, xs: &[f32], cols: usize, ys: &mut [f32]) {
    let mut acc = [[0f32; 16]; MAX_ROWS];
    let mut w = [0f32; 32];
    for b in 0..cols / 32 {
        dequant_block(row, b, &mut w);
        for (i, acc) in acc.iter_mut().enumerate().take(ys.len()) {
            let xb = &xs[i * cols + b * 32..i * cols + b * 32 + 32];
            for l in 0..16 {
                acc[l] += w[l] * xb[l] + w[l + 16] * xb[l + 16];
            }
        }
    }
    for (y, acc) in ys.iter_mut().zip(&acc) {
        *y = acc.iter().sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    fn lcg(seed: &mut u64) -> u8 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*seed >> 56) as u8
    }

    /// Random blocks with small, valid f16 scales.
    fn random_blocks(dtype: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
        let mut seed = 5;
        let bb = dtype.block_bytes().unwrap();
        let n_blocks = rows * cols / 32;
        let mut data = Vec::with_capacity(n_blocks * bb);
        for _ in 0..n_blocks {
            let mut b: Vec<u8> = (0..bb).map(|_| lcg(&mut seed)).collect();
            b[0..2].copy_from_slice(&half::f16::from_f32(0.01 + lcg(&mut seed) as f32 / 5000.0).to_le_bytes());
            if dtype == GgmlType::Q4_1 {
                b[2..4].copy_from_slice(&half::f16::from_f32(-0.05).to_le_bytes());
            }
            data.extend(b);
        }
        data
    }

    #[test]
    fn matches_dequantized_f32_products() {
        let (rows, cols) = (70, 96);
        for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let data = random_blocks(dtype, rows, cols);
            let w = dequantize(dtype, &data, rows * cols).unwrap();
            let q = QMatrix::new(dtype, rows, cols, &data);
            for m in [1, 3, 16, 17, 40] {
                let x: Vec<f32> = (0..m * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 7.0).collect();
                let y = q.matmul(&x, m);
                for i in 0..m {
                    for r in 0..rows {
                        let want: f32 = (0..cols).map(|k| x[i * cols + k] * w[r * cols + k]).sum();
                        let got = y[i * rows + r];
                        assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{dtype} m={m} [{i},{r}]: {got} vs {want}");
                    }
                }
            }
        }
    }

    #[test]
    fn simd_kernel_matches_portable_kernel() {
        let (rows, cols) = (5, 128);
        for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let q = QMatrix::new(dtype, rows, cols, &random_blocks(dtype, rows, cols));
            for m in [1, 2, 16] {
                let x: Vec<f32> = (0..m * cols).map(|i| ((i * 13 % 23) as f32 - 11.0) / 5.0).collect();
                let y = q.matmul(&x, m);
                for r in 0..rows {
                    let nb = cols / 32;
                    let row = Row {
                        dtype,
                        scales: &q.scales[r * nb..(r + 1) * nb],
                        mins: if q.mins.is_empty() { &[] } else { &q.mins[r * nb..(r + 1) * nb] },
                        quants: &q.quants[r * nb * quant_bytes(dtype)..(r + 1) * nb * quant_bytes(dtype)],
                    };
                    let mut ys = vec![0f32; m];
                    row_dot_scalar(&row, &x, cols, &mut ys);
                    for i in 0..m {
                        let got = y[i * rows + r];
                        assert!((got - ys[i]).abs() <= 1e-4 * (1.0 + ys[i].abs()), "{dtype} m={m}: {got} vs {}", ys[i]);
                    }
                }
            }
        }
    }

    #[test]
    fn dequantize_matches_quant_module() {
        let (rows, cols) = (3, 64);
        for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let data = random_blocks(dtype, rows, cols);
            let q = QMatrix::new(dtype, rows, cols, &data);
            assert_eq!(q.dequantize(), dequantize(dtype, &data, rows * cols).unwrap());
        }
    }

    #[test]
    fn stacks_and_permutes_rows() {
        let a = QMatrix::new(GgmlType::Q8_0, 2, 32, &random_blocks(GgmlType::Q8_0, 2, 32));
        let b = QMatrix::new(GgmlType::Q8_0, 1, 32, &random_blocks(GgmlType::Q8_0, 1, 32));
        let s = QMatrix::vstack(&[a.clone(), b.clone()]);
        let x = vec![0.5f32; 32];
        let (ya, yb, ys) = (a.matmul(&x, 1), b.matmul(&x, 1), s.matmul(&x, 1));
        assert_eq!(ys, [ya.clone(), yb].concat());
        assert_eq!(a.permute_rows(&[1, 0]).matmul(&x, 1), vec![ya[1], ya[0]]);
    }
}
