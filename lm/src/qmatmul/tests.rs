//! Kernel tests against [`crate::quant`]'s dequantization.

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
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut avx2 = vec![0f32; m];
                    // SAFETY: AVX2 is available (checked above).
                    unsafe { row_dot_avx2(&row, &x, cols, &mut avx2) };
                    assert_eq!(avx2, ys, "{dtype} m={m}: the AVX2 build of the portable kernel gives the same bits");
                }
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

/// [`QMatrix::matmul_gemm`]: a row's result does not depend on how many
/// rows share the product (what ragged scoring relies on).
#[test]
fn gemm_rows_do_not_depend_on_the_row_count() {
    for (rows, cols) in [(64, 64), (128, 64), (70, 96), (600, 576)] {
        let data = random_blocks(GgmlType::Q8_0, rows, cols);
        let q = QMatrix::new(GgmlType::Q8_0, rows, cols, &data);
        let big = 150;
        let x: Vec<f32> = (0..big * cols).map(|i| ((i * 31 % 17) as f32 - 8.0) / 7.0).collect();
        let all = q.matmul_gemm(&x, big);
        let mut bad = Vec::new();
        for m in [1, 2, 3, 4, 5, 8, 15, 16, 17, 33, 64, 65, 100] {
            let some = q.matmul_gemm(&x[..m * cols], m);
            if some[..] != all[..m * rows] {
                bad.push(m);
            }
        }
        assert!(bad.is_empty(), "{rows}x{cols}: row counts {bad:?} differ from 150 rows");
    }
}
