//! CPU matrix products against weights kept in their GGUF block format.
//!
//! Decoding is bound by reading weights: a Q4_1 weight is 0.625 bytes
//! against 4 for f32. These kernels dequantize each block exactly as
//! [`crate::quant`] does (so the products equal the f32 model's up to
//! summation order) and multiply it with a few activation rows while it
//! is in registers. Prefill (many rows) stays on burn's f32 gemm.

use rayon::prelude::*;

use crate::quant::GgmlType;

/// A `[rows, cols]` weight (`rows` outputs, `cols` inputs) stored as rows
/// of ggml blocks, like a GGUF tensor with `ne = [cols, rows]`.
#[derive(Clone)]
pub struct QMatrix {
    dtype: GgmlType,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
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

impl QMatrix {
    /// Wraps GGUF bytes of a `[rows, cols]` tensor.
    ///
    /// # Panics
    /// If the type has no kernel or the sizes disagree.
    pub fn new(dtype: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Self {
        assert!(supported(dtype), "no kernel for {dtype}");
        assert_eq!(cols % dtype.block_size(), 0);
        assert_eq!(data.len(), rows * row_bytes(dtype, cols));
        Self { dtype, rows, cols, data }
    }

    /// Stacks matrices with the same type and width along the rows.
    pub fn vstack(parts: &[QMatrix]) -> Self {
        let first = &parts[0];
        assert!(parts.iter().all(|p| p.dtype == first.dtype && p.cols == first.cols));
        let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Self::new(first.dtype, parts.iter().map(|p| p.rows).sum(), first.cols, data)
    }

    /// Reorders rows: row `i` of the result is row `order[i]` of `self`.
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        let rb = row_bytes(self.dtype, self.cols);
        let data = order.iter().flat_map(|&r| self.data[r * rb..(r + 1) * rb].iter().copied()).collect();
        Self::new(self.dtype, self.rows, self.cols, data)
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
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.cols);
        let mut yt = vec![0f32; self.rows * m]; // [rows, m]: one chunk per output row
        let rb = row_bytes(self.dtype, self.cols);
        // ~64 rows per task: enough work to amortize scheduling.
        const ROWS_PER_TASK: usize = 64;
        yt.par_chunks_mut(ROWS_PER_TASK * m)
            .zip(self.data.par_chunks(ROWS_PER_TASK * rb))
            .for_each(|(y, w)| {
                for (y, w) in y.chunks_exact_mut(m).zip(w.chunks_exact(rb)) {
                    row_dot(self.dtype, w, x, self.cols, y);
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
}

/// Block-format copies of a model's linear weights for CPU decoding
/// (an inference cache: training must not use a packed model).
#[derive(Debug, Clone)]
pub struct PackedModel {
    pub(crate) blocks: Vec<PackedBlock>,
    /// The output head, `[vocab, hidden]`.
    pub(crate) head: QMatrix,
}

/// One decoder block's weights, fused like the model's (`qkv`, `gate_up`).
#[derive(Debug, Clone)]
pub(crate) struct PackedBlock {
    pub qkv: QMatrix,
    pub o: QMatrix,
    pub gate_up: QMatrix,
    pub down: QMatrix,
}

fn row_bytes(dtype: GgmlType, cols: usize) -> usize {
    cols / dtype.block_size() * dtype.block_bytes().expect("sized type")
}

/// `y[i] = dot(row, x[i])` for every activation row `i`.
fn row_dot(dtype: GgmlType, row: &[u8], x: &[f32], cols: usize, y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above).
            return unsafe { row_dot_avx512(dtype, row, x, cols, y) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { row_dot_avx2(dtype, row, x, cols, y) };
        }
    }
    row_dot_generic(dtype, row, x, cols, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
unsafe fn row_dot_avx512(dtype: GgmlType, row: &[u8], x: &[f32], cols: usize, y: &mut [f32]) {
    row_dot_generic(dtype, row, x, cols, y)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_dot_avx2(dtype: GgmlType, row: &[u8], x: &[f32], cols: usize, y: &mut [f32]) {
    row_dot_generic(dtype, row, x, cols, y)
}

/// Most activation rows handled with one pass over the weights; more rows
/// are processed in groups of this size.
const MAX_ROWS: usize = 16;

/// Lanes of the per-row partial sums: wide enough for the compiler to keep
/// them in vector registers, with a fixed summation order.
const LANES: usize = 16;

#[inline(always)]
fn row_dot_generic(dtype: GgmlType, row: &[u8], x: &[f32], cols: usize, y: &mut [f32]) {
    let m = y.len();
    for start in (0..m).step_by(MAX_ROWS) {
        let n = MAX_ROWS.min(m - start);
        let xs = &x[start * cols..(start + n) * cols];
        let ys = &mut y[start..start + n];
        match dtype {
            GgmlType::Q4_0 => dot_blocks::<18>(row, xs, cols, ys, |b, w| {
                let d = half_at(b, 0);
                for j in 0..16 {
                    let q = b[2 + j];
                    w[j] = ((q & 0xF) as i32 - 8) as f32 * d;
                    w[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }),
            GgmlType::Q4_1 => dot_blocks::<20>(row, xs, cols, ys, |b, w| {
                let (d, mn) = (half_at(b, 0), half_at(b, 2));
                for j in 0..16 {
                    let q = b[4 + j];
                    w[j] = (q & 0xF) as f32 * d + mn;
                    w[j + 16] = (q >> 4) as f32 * d + mn;
                }
            }),
            GgmlType::Q8_0 => dot_blocks::<34>(row, xs, cols, ys, |b, w| {
                let d = half_at(b, 0);
                for j in 0..32 {
                    w[j] = (b[2 + j] as i8) as f32 * d;
                }
            }),
            other => unreachable!("no kernel for {other}"),
        }
    }
}

#[inline(always)]
fn half_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dot products of one weight row (blocks of 32 of `BYTES` bytes each)
/// with up to [`MAX_ROWS`] activation rows.
#[inline(always)]
fn dot_blocks<const BYTES: usize>(
    row: &[u8],
    xs: &[f32],
    cols: usize,
    ys: &mut [f32],
    dequant: impl Fn(&[u8], &mut [f32; 32]),
) {
    let n = ys.len();
    let mut acc = [[0f32; LANES]; MAX_ROWS];
    let mut w = [0f32; 32];
    for (blk, b) in row.chunks_exact(BYTES).enumerate() {
        dequant(b, &mut w);
        let off = blk * 32;
        for (i, acc) in acc.iter_mut().enumerate().take(n) {
            let xb = &xs[i * cols + off..i * cols + off + 32];
            for l in 0..LANES {
                acc[l] += w[l] * xb[l] + w[l + 16] * xb[l + 16];
            }
        }
    }
    for (y, acc) in ys.iter_mut().zip(&acc) {
        *y = acc.iter().sum();
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
            let q = QMatrix::new(dtype, rows, cols, data);
            for m in [1, 3, 17] {
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
    fn stacks_and_permutes_rows() {
        let a = QMatrix::new(GgmlType::Q8_0, 2, 32, random_blocks(GgmlType::Q8_0, 2, 32));
        let b = QMatrix::new(GgmlType::Q8_0, 1, 32, random_blocks(GgmlType::Q8_0, 1, 32));
        let s = QMatrix::vstack(&[a.clone(), b.clone()]);
        let x = vec![0.5f32; 32];
        let (ya, yb, ys) = (a.matmul(&x, 1), b.matmul(&x, 1), s.matmul(&x, 1));
        assert_eq!(ys, [ya.clone(), yb].concat());
        assert_eq!(a.permute_rows(&[1, 0]).matmul(&x, 1), vec![ya[1], ya[0]]);
    }
}
