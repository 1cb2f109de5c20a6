//! ggml tensor types and their dequantization to f32.
//!
//! Block layouts follow ggml (`ggml-common.h`, `ggml-quants.c`); all
//! scales are little-endian f16. A block of `Q4_0`/`Q4_1`/`Q5_*` stores
//! element `j` of its first half in the low nibble of byte `j` and element
//! `j + 16` in the high nibble.

use half::{bf16, f16};
use rayon::prelude::*;

/// A ggml element type, by its GGUF type id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[expect(non_camel_case_types, reason = "ggml's names")]
pub enum GgmlType {
    /// 0
    F32,
    /// 1
    F16,
    /// 2: 32 × 4-bit, one f16 scale, offset -8.
    Q4_0,
    /// 3: 32 × 4-bit, f16 scale and f16 min.
    Q4_1,
    /// 6: 32 × 5-bit, one f16 scale, offset -16.
    Q5_0,
    /// 7: 32 × 5-bit, f16 scale and min.
    Q5_1,
    /// 8: 32 × i8, one f16 scale.
    Q8_0,
    /// 9: 32 × i8, f16 scale and f16 sum (an activation format).
    Q8_1,
    /// 10
    Q2_K,
    /// 11
    Q3_K,
    /// 12: 256 values in 8 sub-blocks of 32, 6-bit scales and mins.
    Q4_K,
    /// 13
    Q5_K,
    /// 14: 256 values, 16 sub-blocks of 16 with i8 scales.
    Q6_K,
    /// 15
    Q8_K,
    /// 24
    I8,
    /// 25
    I16,
    /// 26
    I32,
    /// 27
    I64,
    /// 28
    F64,
    /// 30
    BF16,
    /// Ids of the i-quants and newer types: known to exist, not supported here.
    Other(u32),
    /// An id ggml does not define (as of this writing).
    Unknown(u32),
}

impl GgmlType {
    /// The type for a GGUF type id.
    pub fn from_id(id: u32) -> GgmlType {
        use GgmlType::*;
        match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            16..=23 | 29 | 31..=39 => Other(id),
            _ => Unknown(id),
        }
    }

    /// The GGUF type id.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            Other(id) | Unknown(id) => id,
        }
    }

    /// Elements per block (1 for plain types).
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 => 32,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => 256,
            _ => 1,
        }
    }

    /// Bytes per block, if known.
    pub fn block_bytes(self) -> Option<usize> {
        use GgmlType::*;
        Some(match self {
            F32 | I32 => 4,
            F16 | BF16 | I16 => 2,
            I8 => 1,
            I64 | F64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
            Other(_) | Unknown(_) => return None,
        })
    }

    /// Bytes for `n` elements (`None` for unknown types, and for counts whose
    /// size does not fit in a `u64`: a corrupt GGUF can claim such counts).
    pub fn byte_size(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        n.div_ceil(bs).checked_mul(self.block_bytes()? as u64)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GgmlType::Other(id) => {
                let name = match id {
                    16 => "IQ2_XXS",
                    17 => "IQ2_XS",
                    18 => "IQ3_XXS",
                    19 => "IQ1_S",
                    20 => "IQ4_NL",
                    21 => "IQ3_S",
                    22 => "IQ2_S",
                    23 => "IQ4_XS",
                    29 => "IQ1_M",
                    34 => "TQ1_0",
                    35 => "TQ2_0",
                    39 => "MXFP4",
                    _ => return write!(f, "ggml type {id}"),
                };
                write!(f, "{name} (ggml type {id})")
            }
            GgmlType::Unknown(id) => write!(f, "unknown ggml type {id}"),
            t => write!(f, "{t:?}"),
        }
    }
}

/// Dequantizes `n` elements of type `ty` from `bytes`; `None` if the type
/// is not supported. `bytes` must hold `ty.byte_size(n)` bytes.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
    let block: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        GgmlType::F16 => |b, y| y[0] = f16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::BF16 => |b, y| y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        GgmlType::Q4_0 => block_q4_0,
        GgmlType::Q4_1 => block_q4_1,
        GgmlType::Q5_0 => block_q5_0,
        GgmlType::Q5_1 => block_q5_1,
        GgmlType::Q8_0 => block_q8_0,
        GgmlType::Q4_K => block_q4_k,
        GgmlType::Q6_K => block_q6_k,
        _ => return None,
    };
    let (bs, bb) = (ty.block_size(), ty.block_bytes()?);
    assert_eq!(n % bs, 0, "{n} elements is not a whole number of {ty} blocks");
    assert!(bytes.len() >= n / bs * bb, "too few bytes for {n} {ty} elements");
    let mut out = vec![0f32; n];
    // Chunks of many blocks per task keep rayon's overhead negligible.
    const BLOCKS_PER_TASK: usize = 4096;
    out.par_chunks_mut(bs * BLOCKS_PER_TASK)
        .zip(bytes.par_chunks(bb * BLOCKS_PER_TASK))
        .for_each(|(y, b)| {
            for (y, b) in y.chunks_exact_mut(bs).zip(b.chunks_exact(bb)) {
                block(b, y);
            }
        });
    Some(out)
}

/// Encodes `data` as `ty` (the inverse of [`dequantize`], as ggml's
/// reference quantizers do it): F32, F16, Q8_0 and Q4_0; `None` for other
/// types. Block types need `data.len()` to be a multiple of 32.
pub fn quantize(ty: GgmlType, data: &[f32]) -> Option<Vec<u8>> {
    let block: fn(&[f32], &mut Vec<u8>) = match ty {
        GgmlType::F32 => return Some(data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        GgmlType::F16 => return Some(data.iter().flat_map(|x| f16::from_f32(*x).to_le_bytes()).collect()),
        GgmlType::Q8_0 => quantize_q8_0,
        GgmlType::Q4_0 => quantize_q4_0,
        _ => return None,
    };
    assert_eq!(data.len() % ty.block_size(), 0, "{} elements is not a whole number of {ty} blocks", data.len());
    let mut out = Vec::with_capacity(ty.byte_size(data.len() as u64)? as usize);
    for x in data.chunks_exact(ty.block_size()) {
        block(x, &mut out);
    }
    Some(out)
}

/// ggml's `quantize_row_q8_0_ref`: `d = amax / 127`, `q = round(x / d)`.
fn quantize_q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|v| ((v * id).round() as i8) as u8));
}

/// ggml's `quantize_row_q4_0_ref`: the value of largest magnitude maps to
/// -8, `d = max / -8`, `q = min(15, trunc(x / d + 8.5))`, low nibbles hold
/// the first 16 values and high nibbles the last 16.
fn quantize_q4_0(x: &[f32], out: &mut Vec<u8>) {
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
    out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
}

fn half_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `Q4_0`: `d: f16, qs: [u8; 16]`; `x = (q - 8) * d`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = ((q & 0xF) as i32 - 8) as f32 * d;
        y[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// `Q4_1`: `d: f16, m: f16, qs: [u8; 16]`; `x = q * d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = (q & 0xF) as f32 * d + m;
        y[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The 5th bits of a `Q5_*` block: bit `j` of `qh` belongs to element `j`.
fn q5_values(qh: u32, qs: &[u8]) -> impl Iterator<Item = (usize, u8, u8)> + '_ {
    qs.iter().enumerate().map(move |(j, &q)| {
        let h0 = (((qh >> j) & 1) << 4) as u8;
        let h1 = (((qh >> (j + 16)) & 1) << 4) as u8;
        (j, (q & 0xF) | h0, (q >> 4) | h1)
    })
}

/// `Q5_0`: `d: f16, qh: u32, qs: [u8; 16]`; `x = (q - 16) * d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, lo, hi) in q5_values(qh, &b[6..22]) {
        y[j] = (lo as i32 - 16) as f32 * d;
        y[j + 16] = (hi as i32 - 16) as f32 * d;
    }
}

/// `Q5_1`: `d: f16, m: f16, qh: u32, qs: [u8; 16]`; `x = q * d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, lo, hi) in q5_values(qh, &b[8..24]) {
        y[j] = lo as f32 * d + m;
        y[j + 16] = hi as f32 * d + m;
    }
}

/// `Q8_0`: `d: f16, qs: [i8; 32]`; `x = q * d`.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (y, &q) in y.iter_mut().zip(&b[2..34]) {
        *y = (q as i8) as f32 * d;
    }
}

/// Scale and min of sub-block `j` (0..8) from `Q4_K`'s 12 packed bytes:
/// 6 bits each; sub-blocks 4..8 keep their top 2 bits in bytes 0..8.
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// `Q4_K`: `d: f16, dmin: f16, scales: [u8; 12], qs: [u8; 128]`. Each 64
/// values share 32 bytes: the low nibbles are sub-block `2i`, the high
/// nibbles sub-block `2i + 1`; `x = d * sc * q - dmin * m`.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    for (i, (q, y)) in b[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * i, scales);
        let (sc2, m2) = scale_min_k4(2 * i + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        for (l, &q) in q.iter().enumerate() {
            y[l] = d1 * (q & 0xF) as f32 - m1;
            y[l + 32] = d2 * (q >> 4) as f32 - m2;
        }
    }
}

/// `Q6_K`: `ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16`. Each
/// 128 values use 64 `ql` bytes and 32 `qh` bytes; `x = d * sc * (q - 32)`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * (sc[is + k] as i8) as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn quantize_round_trips_within_a_step() {
        let x: Vec<f32> = (0..64).map(|i| ((i * 37 % 64) as f32 - 31.5) / 10.0).collect();
        for (ty, step) in [(GgmlType::F32, 0.0), (GgmlType::F16, 3.2e-3), (GgmlType::Q8_0, 3.2 / 127.0), (GgmlType::Q4_0, 3.2 / 8.0)] {
            let bytes = quantize(ty, &x).unwrap();
            assert_eq!(bytes.len() as u64, ty.byte_size(64).unwrap(), "{ty}");
            let back = dequantize(ty, &bytes, 64).unwrap();
            for (a, b) in x.iter().zip(&back) {
                // Half a step, except Q4_0's clamped top code (a whole step).
                assert!((a - b).abs() <= step + 1e-6, "{ty}: {a} -> {b}");
            }
        }
        assert!(quantize(GgmlType::Q4_1, &x).is_none());
        assert_eq!(quantize(GgmlType::Q8_0, &[0.0; 32]).unwrap()[2..], [0u8; 32]);
    }
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        f16::from_f32(x).to_le_bytes()
    }

    #[test]
    fn plain_types() {
        let f32s: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(dequantize(GgmlType::F32, &f32s, 2).unwrap(), vec![1.5, -2.0]);
        // f16 0x3C00 = 1.0, 0xC000 = -2.0, 0x3555 ≈ 0.33325
        let f16s = [0x00, 0x3C, 0x00, 0xC0, 0x55, 0x35];
        assert_eq!(dequantize(GgmlType::F16, &f16s, 3).unwrap(), vec![1.0, -2.0, 0.333_251_95]);
        // bf16 0x3F80 = 1.0, 0xC0A0 = -5.0, 0x3E20 = 0.15625
        let bf16s = [0x80, 0x3F, 0xA0, 0xC0, 0x20, 0x3E];
        assert_eq!(dequantize(GgmlType::BF16, &bf16s, 3).unwrap(), vec![1.0, -5.0, 0.156_25]);
    }

    #[test]
    fn q4_0_block() {
        // d = 0.5; byte j = (hi << 4) | lo with lo = j, hi = 15 - j.
        let mut b = h(0.5).to_vec();
        b.extend((0..16u8).map(|j| ((15 - j) << 4) | j));
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!(y[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(y[8], 0.0);
        assert_eq!(y[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(y[16], 3.5); // hi nibble of byte 0 = 15
        assert_eq!(y[31], -4.0);
    }

    #[test]
    fn q4_1_block() {
        // d = 0.25, m = -1; lo = j, hi = 2.
        let mut b = [h(0.25), h(-1.0)].concat();
        b.extend((0..16u8).map(|j| (2 << 4) | j));
        let y = dequantize(GgmlType::Q4_1, &b, 32).unwrap();
        assert_eq!(y[0], -1.0);
        assert_eq!(y[3], -0.25);
        assert_eq!(y[15], 2.75);
        assert!(y[16..].iter().all(|&v| v == -0.5));
    }

    #[test]
    fn q8_0_block_and_two_blocks() {
        let mut b = h(0.125).to_vec();
        b.extend((0..32i8).map(|j| (j - 16) as u8));
        b.extend(h(2.0));
        b.extend([127u8, 0x80].iter().chain([0u8; 30].iter()));
        let y = dequantize(GgmlType::Q8_0, &b, 64).unwrap();
        assert_eq!(y[0], -2.0);
        assert_eq!(y[31], 1.875);
        assert_eq!(y[32], 254.0);
        assert_eq!(y[33], -256.0);
        assert_eq!(y[63], 0.0);
    }

    #[test]
    fn q5_0_and_q5_1_blocks() {
        // qh: bit 0 (element 0) and bit 16 (element 16) set; lo nibbles 1, hi 2.
        let qh = (1u32 | (1 << 16)).to_le_bytes();
        let qs = [0x21u8; 16];
        let b = [&h(1.0)[..], &qh, &qs].concat();
        let y = dequantize(GgmlType::Q5_0, &b, 32).unwrap();
        assert_eq!(y[0], (17 - 16) as f32);
        assert_eq!(y[1], (1 - 16) as f32);
        assert_eq!(y[16], (18 - 16) as f32);
        assert_eq!(y[17], (2 - 16) as f32);
        let b = [&h(0.5)[..], &h(10.0), &qh, &qs].concat();
        let y = dequantize(GgmlType::Q5_1, &b, 32).unwrap();
        assert_eq!(y[0], 17.0 * 0.5 + 10.0);
        assert_eq!(y[1], 0.5 + 10.0);
        assert_eq!(y[16], 18.0 * 0.5 + 10.0);
    }

    #[test]
    fn q4_k_block() {
        let mut b = [h(0.5), h(0.25)].concat();
        // Sub-block scales/mins: j<4 use 6 low bits of bytes j and j+4;
        // j>=4 combine the nibbles of byte j+4 with the top bits of j-4 / j.
        let mut s = [0u8; 12];
        s[0] = 2 | (1 << 6); // sc0 = 2, top bits of sc4 = 1
        s[4] = 3 | (2 << 6); // m0 = 3, top bits of m4 = 2
        s[1] = 4; // sc1 = 4
        s[5] = 0; // m1 = 0
        s[8] = 0x5 | (0x7 << 4); // sc4 low = 5, m4 low = 7
        b.extend(s);
        let mut qs = [0u8; 128];
        qs[0] = 0x9 | (0x3 << 4); // sub-block 0 el 0 = 9, sub-block 1 el 0 = 3
        qs[64] = 0x6; // sub-block 4 el 0 = 6
        b.extend(qs);
        let y = dequantize(GgmlType::Q4_K, &b, 256).unwrap();
        assert_eq!(y[0], 0.5 * 2.0 * 9.0 - 0.25 * 3.0);
        assert_eq!(y[1], -0.25 * 3.0);
        assert_eq!(y[32], 0.5 * 4.0 * 3.0);
        // sub-block 4: sc = 5 | 1 << 4 = 21, m = 7 | 2 << 4 = 39
        assert_eq!(y[128], 0.5 * 21.0 * 6.0 - 0.25 * 39.0);
        assert_eq!(y[255], 0.0); // sub-block 7: scale and min 0
    }

    #[test]
    fn q6_k_block() {
        let mut ql = [0u8; 128];
        let mut qh = [0u8; 64];
        let mut sc = [1i8; 16];
        ql[0] = 0x21; // el 0 lo = 1, el 64 lo = 2
        qh[0] = 0b11_10_01_11; // el 0 hi 3, el 32 hi 1, el 64 hi 2, el 96 hi 3
        ql[32] = 0x04; // el 32 lo = 4
        sc[0] = 2;
        sc[4] = -3; // sub-block of el 64
        ql[64] = 0xF0; // second half: el 128 lo = 0, el 192 lo = 15
        sc[8] = 5;
        let mut b = [ql.as_slice(), &qh, &sc.map(|s| s as u8)].concat();
        b.extend(h(0.5));
        let y = dequantize(GgmlType::Q6_K, &b, 256).unwrap();
        assert_eq!(y[0], 0.5 * 2.0 * ((1 | 3 << 4) - 32) as f32);
        assert_eq!(y[32], 0.5 * 1.0 * ((4 | 1 << 4) - 32) as f32);
        assert_eq!(y[64], 0.5 * -3.0 * ((2 | 2 << 4) - 32) as f32);
        assert_eq!(y[96], 0.5 * 1.0 * ((3 << 4) - 32) as f32); // low nibble 0
        assert_eq!(y[128], 0.5 * 5.0 * -32.0);
        assert_eq!(y[192], 0.5 * 1.0 * (15 - 32) as f32);
        assert_eq!(y[1], 0.5 * 2.0 * -32.0);
    }

    #[test]
    fn unsupported_and_sizes() {
        assert!(dequantize(GgmlType::Q2_K, &[0; 84], 256).is_none());
        assert_eq!(GgmlType::Q4_1.byte_size(64), Some(40));
        assert_eq!(GgmlType::from_id(3), GgmlType::Q4_1);
        assert_eq!(GgmlType::from_id(20), GgmlType::Other(20));
        assert_eq!(GgmlType::Other(20).to_string(), "IQ4_NL (ggml type 20)");
        assert_eq!(GgmlType::Q4_1.to_string(), "Q4_1");
        assert_eq!(GgmlType::from_id(1000), GgmlType::Unknown(1000));
        for id in 0..40 {
            assert_eq!(GgmlType::from_id(id).id(), id);
        }
    }
}
