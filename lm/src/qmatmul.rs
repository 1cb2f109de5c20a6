//! CPU matrix products against weights kept in their GGUF block format.
//!
//! Decoding is bound by reading weights: a Q4_1 weight is 0.625 bytes
//! against 4 for f32. These kernels dequantize each block exactly as
//! [`crate::quant`] does (so the products equal the f32 model's up to
//! summation order) and multiply it with a few activation rows while it
//! is in registers. Prefill (many rows) stays on burn's f32 gemm.

use rayon::prelude::*;

use crate::quant::GgmlType;

thread_local! {
    /// [`QMatrix::matmul_gemm`]'s dequantized weight tile (about 4 MiB).
    static GEMM_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

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
        if m > row_kernel_rows() {
            return self.matmul_gemm(x, m);
        }
        self.by_weight_rows(m, |r0, y| {
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
        })
    }

    /// The block kernels' product over `m` activation rows: `f(r0, y)` fills
    /// `y`, the results of weight rows `r0..` (`[n, m]`, one weight row's
    /// results per `m`), in parallel tasks; returns them as `[m, rows]`.
    fn by_weight_rows(&self, m: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
        let mut yt = vec![0f32; self.rows * m]; // [rows, m]
        // A few tasks per thread balance load without much scheduling.
        let per_task = (self.rows / (4 * rayon::current_num_threads())).clamp(8, 256);
        yt.par_chunks_mut(per_task * m).enumerate().for_each(|(t, y)| f(t * per_task, y));
        let mut out = vec![0f32; m * self.rows];
        for r in 0..self.rows {
            for i in 0..m {
                out[i * self.rows + r] = yt[r * m + i];
            }
        }
        out
    }

    /// [`QMatrix::matmul`] for many rows: weight tiles of about 4 MiB are
    /// dequantized and multiplied with gemm. Also for any row count where a
    /// row's result must not depend on how many rows share the product
    /// (gemm blocks the inner dimension by its size alone).
    pub(crate) fn matmul_gemm(&self, x: &[f32], m: usize) -> Vec<f32> {
        let rows = self.rows;
        let mut out = vec![0f32; m.max(GEMM_MIN_ROWS) * rows];
        // Tile r0..r0 + n fills columns r0..r0 + n of out, `[m, rows]`.
        self.gemm_tiles(x, m, |r0, _, gemm| gemm(&mut out[r0..], rows));
        out.truncate(m * rows);
        out
    }

    /// `f(r0, product)` for each tile of weight rows `r0..r0 + n`, with
    /// `product = x · tileᵀ` as `[m, n]` row-major: the whole product
    /// without holding `[m, rows]` at once (an output head over a large
    /// vocabulary and many positions). The same bits as [`QMatrix::matmul_gemm`].
    pub(crate) fn matmul_tiles(&self, x: &[f32], m: usize, mut f: impl FnMut(usize, &[f32])) {
        let mut buf = Vec::new();
        self.gemm_tiles(x, m, |r0, n, gemm| {
            buf.clear();
            buf.resize(m.max(GEMM_MIN_ROWS) * n, 0.0);
            gemm(&mut buf, n);
            f(r0, &buf[..m * n]);
        });
    }

    /// Dequantizes each tile of about 4 MiB of weight rows and hands `f` its
    /// first row, its row count `n` and a gemm that writes `x · tileᵀ`
    /// (`[m', n]`, `m' = max(m, GEMM_MIN_ROWS)`: fewer rows are padded with
    /// zeros, since gemm gives a few rows other kernels whose sums differ in
    /// the last bits; a unit test pins this) to the start of `dst`, row
    /// stride `dst_rs`.
    ///
    /// # Panics
    /// If `dst` is too short for that.
    fn gemm_tiles(&self, x: &[f32], m: usize, mut f: impl FnMut(usize, usize, &mut dyn FnMut(&mut [f32], usize))) {
        assert_eq!(x.len(), m * self.cols);
        let padded;
        let (x, m_eff) = if m < GEMM_MIN_ROWS {
            padded = [x, &vec![0f32; (GEMM_MIN_ROWS - m) * self.cols]].concat();
            (&padded[..], GEMM_MIN_ROWS)
        } else {
            (x, m)
        };
        let tile = ((1 << 20) / self.cols).max(16);
        // The tile buffer is reused across calls on this thread: a fresh 4 MiB
        // allocation per matmul is returned to the OS when freed, and its page
        // faults and `brk` calls showed as ~8% of a 200-token prefill profile.
        let mut scratch = GEMM_SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
        scratch.resize(tile.min(self.rows) * self.cols, 0.0);
        for r0 in (0..self.rows).step_by(tile) {
            let n = tile.min(self.rows - r0);
            let w = &mut scratch[..n * self.cols];
            self.dequantize_rows(r0, w);
            let w = &*w;
            let mut gemm = |dst: &mut [f32], dst_rs: usize| gemm_xwt(x, m_eff, w, n, self.cols, dst, dst_rs);
            f(r0, n, &mut gemm);
        }
        GEMM_SCRATCH.with(|s| *s.borrow_mut() = scratch);
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
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is available (checked above).
                unsafe { row_dot_avx2(&row, xs, self.cols, ys) };
                continue;
            }
            row_dot_scalar(&row, xs, self.cols, ys);
        }
    }
}
/// `dst = x · wᵀ` with gemm on rayon's threads: `x` is `[m, k]`, `w`
/// `[n, k]` (read as its transpose), `dst` `[m, n]` with row stride `dst_rs`.
///
/// # Panics
/// If a slice is too short for that.
fn gemm_xwt(x: &[f32], m: usize, w: &[f32], n: usize, k: usize, dst: &mut [f32], dst_rs: usize) {
    assert!(x.len() >= m * k && w.len() >= n * k, "gemm operands too short");
    assert!(dst_rs >= n && dst.len() >= (m - 1) * dst_rs + n, "gemm destination too short");
    // SAFETY: the sizes are checked above; x rows are k apart, w is read as
    // [k, n] with column stride k, dst rows are dst_rs apart.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            false,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
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

/// Most rows [`QMatrix::matmul`] gives the block kernels (in passes of
/// [`MAX_ROWS`] over each weight row, while it is in L1); more go to gemm.
/// `RETORT_ROW_KERNEL_ROWS` overrides it (for benchmarking).
pub fn row_kernel_rows() -> usize {
    static ROWS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *ROWS.get_or_init(|| {
        std::env::var("RETORT_ROW_KERNEL_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(MAX_ROWS)
    })
}

/// Fewest rows [`QMatrix::matmul_gemm`] hands gemm (it pads with zeros).
const GEMM_MIN_ROWS: usize = 8;

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

/// [`row_dot_scalar`] compiled for AVX2, for x86 machines without AVX-512:
/// the same operations in the same order (Rust never fuses or reorders
/// float operations on its own), so the same bits, in 8-lane registers.
/// Without it the portable loop is built for the x86-64 baseline (SSE2)
/// and decoding a 135M model runs ~6× slower than on an AVX-512 machine.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_dot_avx2(row: &Row<'_>, xs: &[f32], cols: usize, ys: &mut [f32]) {
    row_dot_scalar(row, xs, cols, ys)
}

/// Portable kernel (and the reference for the SIMD one).
#[inline(always)]
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
mod avx512;
mod bf16;
mod q8;

pub use bf16::round_bf16;
pub(crate) use bf16::Bf16Rows;
#[cfg(test)]
mod tests;
