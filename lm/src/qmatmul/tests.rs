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

/// 8-bit activations: every kernel against the portable one (same integer
/// sums; floats in another order), and both near the f32 product (the
/// activations' rounding is at most half a step of `max|x| / 127`).
#[test]
fn q8_activations_match_the_portable_kernel_and_the_f32_product() {
    let rows = 37;
    for cols in [64, 96, 576] {
        for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let data = random_blocks(dtype, rows, cols);
            let w = dequantize(dtype, &data, rows * cols).unwrap();
            let q = QMatrix::new(dtype, rows, cols, &data);
            for m in [1, 3, 16] {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i * 37 % 29) as f32 - 14.0) / 9.0)
                    .collect();
                let y = q.matmul_q8(&x, m);
                let xq = q8::quantize(&x, m, cols, q8::Layout::for_type(dtype));
                for r in 0..rows {
                    let mut portable = vec![0f32; m];
                    q8::row_dot_q8_scalar(&q.row(r), &xq, 0, &mut portable);
                    for i in 0..m {
                        let got = y[i * rows + r];
                        // Float sums in another order: relative to the terms' size.
                        let size: f32 = (0..cols)
                            .map(|k| (x[i * cols + k] * w[r * cols + k]).abs())
                            .sum();
                        assert!(
                            (got - portable[i]).abs() <= 1e-5 * (1.0 + size),
                            "{dtype} {cols} m={m} [{i},{r}]: {got} vs portable {}",
                            portable[i]
                        );
                        let exact: f32 = (0..cols).map(|k| x[i * cols + k] * w[r * cols + k]).sum();
                        let bound: f32 = (0..cols / 32)
                            .map(|b| {
                                let xb = &x[i * cols + b * 32..i * cols + b * 32 + 32];
                                let step = xb.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                                0.5 * step
                                    * w[r * cols + b * 32..r * cols + b * 32 + 32]
                                        .iter()
                                        .map(|v| v.abs())
                                        .sum::<f32>()
                            })
                            .sum();
                        assert!(
                            (got - exact).abs() <= bound * 1.001 + 1e-5,
                            "{dtype} {cols} m={m} [{i},{r}]: {got} vs f32 {exact} (bound {bound})"
                        );
                    }
                }
            }
        }
    }
}

/// A row's result does not depend on the other rows of the product.
#[test]
fn q8_rows_do_not_depend_on_the_batch() {
    let (rows, cols) = (19, 160);
    for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        let q = QMatrix::new(dtype, rows, cols, &random_blocks(dtype, rows, cols));
        let x: Vec<f32> = (0..16 * cols)
            .map(|i| ((i * 11 % 31) as f32 - 15.0) / 4.0)
            .collect();
        let all = q.matmul_q8(&x, 16);
        for i in [0, 7, 15] {
            let alone = q.matmul_q8(&x[i * cols..(i + 1) * cols], 1);
            assert_eq!(alone, all[i * rows..(i + 1) * rows], "{dtype} row {i}");
        }
    }
}

/// The activations' order within a block pair is the unpacked nibbles'.
#[test]
fn q8_layout_puts_nibble_pairs_together() {
    let cols = 96; // a pair and a lone block
    let x: Vec<f32> = (0..cols).map(|k| k as f32 - 40.0).collect();
    let natural = q8::quantize(&x, 1, cols, q8::Layout::Natural);
    let nibbles = q8::quantize(&x, 1, cols, q8::Layout::Nibbles);
    let order: Vec<usize> = (0..16)
        .chain(32..48)
        .chain(16..32)
        .chain(48..64)
        .chain(64..96)
        .collect();
    let want: Vec<i8> = order.iter().map(|&k| natural.quants[k]).collect();
    assert_eq!(nibbles.quants, want);
    // Block 1 (elements 32..64, values -8..=23): d = 23/127, q(-8) = round(-8·127/23) = -44.
    assert_eq!(natural.quants[32], -44);
    assert_eq!(natural.quants[63], 127);
    let qsum: i32 = natural.quants[32..64].iter().map(|&q| q as i32).sum();
    assert_eq!(natural.sums[1], natural.scales[1] * qsum as f32);
}

/// The AVX2 kernel (what machines without AVX-512 VNNI run) against the
/// portable one, on this machine when it has AVX2.
#[cfg(target_arch = "x86_64")]
#[test]
fn q8_avx2_kernel_matches_the_portable_kernel() {
    if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
        eprintln!("skipping: no AVX2");
        return;
    }
    let rows = 9;
    for cols in [64, 96, 576] {
        for dtype in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
            let q = QMatrix::new(dtype, rows, cols, &random_blocks(dtype, rows, cols));
            let m = 3;
            let x: Vec<f32> = (0..m * cols).map(|i| ((i * 19 % 41) as f32 - 20.0) / 6.0).collect();
            let xq = q8::quantize(&x, m, cols, q8::Layout::for_type(dtype));
            for r in 0..rows {
                let (mut simd, mut portable) = (vec![0f32; m], vec![0f32; m]);
                // SAFETY: AVX2 and FMA are available (checked above).
                unsafe { q8::row_dot_q8_avx2(&q.row(r), &xq, 0, &mut simd) };
                q8::row_dot_q8_scalar(&q.row(r), &xq, 0, &mut portable);
                for i in 0..m {
                    assert!((simd[i] - portable[i]).abs() <= 1e-4 * (1.0 + portable[i].abs()), "{dtype} {cols} [{i},{r}]: {} vs {}", simd[i], portable[i]);
                }
            }
        }
    }
}

#[test]
fn bf16_rounding_by_hand() {
    assert_eq!(round_bf16(1.0), 1.0);
    // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even one, 1.
    assert_eq!(round_bf16(1.0 + 2f32.powi(-8)), 1.0);
    // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ (odd) and 1 + 2⁻⁶ (even).
    assert_eq!(round_bf16(1.0 + 3.0 * 2f32.powi(-8)), 1.0 + 2f32.powi(-6));
    assert_eq!(round_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20)), 1.0 + 2f32.powi(-7));
    assert_eq!(round_bf16(-3.0), -3.0);
    assert!(round_bf16(f32::NAN).is_nan());
    assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
}

/// bf16 products: both paths (the AVX-512 BF16 kernel where this CPU has
/// it, and the portable one) against the f64 sum of the rounded operands;
/// and each row the same bits alone as in a batch.
#[test]
fn bf16_products_sum_the_rounded_operands_and_do_not_depend_on_the_batch() {
    let kernel = bf16::kernel_available();
    if !kernel {
        eprintln!("this CPU has no AVX-512 BF16: only the portable path is tested");
    }
    // 33,000 × 32 spans two of `matmul_tiles_bf16`'s tiles.
    for (rows, cols) in [(70, 96), (48, 64), (97, 576), (33_000, 32)] {
        for dtype in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let data = random_blocks(dtype, rows, cols);
            let w = dequantize(dtype, &data, rows * cols).unwrap();
            let q = QMatrix::new(dtype, rows, cols, &data);
            let big = 21;
            let x: Vec<f32> = (0..big * cols).map(|i| ((i * 37 % 29) as f32 - 14.0) / 9.0 + 1e-3 * (i % 7) as f32).collect();
            for path in [false, true].into_iter().filter(|&p| !p || kernel) {
                let all = q.matmul_bf16(&Bf16Rows::for_path(&x, big, cols, path));
                for i in 0..big {
                    for r in 0..rows {
                        let want: f64 = (0..cols).map(|k| round_bf16(x[i * cols + k]) as f64 * round_bf16(w[r * cols + k]) as f64).sum();
                        let got = all[i * rows + r] as f64;
                        assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{dtype} kernel={path} [{i},{r}]: {got} vs {want}");
                    }
                }
                for m in [1, 3, 8, 9, 16] {
                    let some = q.matmul_bf16(&Bf16Rows::for_path(&x[..m * cols], m, cols, path));
                    assert!(some[..] == all[..m * rows], "{dtype} {rows}x{cols} kernel={path}: {m} rows differ from {big}");
                }
                // A tile at a time: the same bits as the whole product.
                let mut tiled = vec![0f32; big * rows];
                q.matmul_tiles_bf16(&Bf16Rows::for_path(&x, big, cols, path), |r0, t| {
                    let n = t.len() / big;
                    for i in 0..big {
                        tiled[i * rows + r0..i * rows + r0 + n].copy_from_slice(&t[i * n..(i + 1) * n]);
                    }
                });
                assert!(tiled == all, "{dtype} kernel={path}: tiles differ");
            }
        }
    }
}

/// The vector packing of activations gives [`round_bf16`]'s pairs.
#[test]
fn bf16_pairs_packed_by_the_cpu_match_the_portable_rounding() {
    let row: Vec<f32> = (0..96).map(|i| (i as f32 * 0.37).sin() * 10f32.powi(i % 7 - 3) + if i % 5 == 0 { 1.0 + 2f32.powi(-8) } else { 0.0 }).collect();
    let mut got = vec![0u32; 48];
    bf16::pack_row(&row, &mut got);
    for (p, g) in got.iter().enumerate() {
        let want = (round_bf16(row[2 * p]).to_bits() >> 16) | (round_bf16(row[2 * p + 1]).to_bits() & 0xFFFF_0000);
        assert_eq!(*g, want, "pair {p}");
    }
}
