//! Byte-level helpers: GPT-2's byte ↔ unicode-char table and an incremental
//! UTF-8 decoder for streaming generated tokens.

use std::collections::HashMap;
use std::sync::LazyLock;

/// GPT-2's reversible byte → char table (`bytes_to_unicode` in GPT-2's
/// `encoder.py`): printable Latin-1 bytes map to themselves, the other 68
/// bytes to U+0100.. in order.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut next = 0u32;
    for b in 0..=255u8 {
        table[b as usize] = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(256 + next).expect("U+0100..U+0143 are chars");
            next += 1;
            c
        };
    }
    table
}

static CHAR_TO_BYTE: LazyLock<HashMap<char, u8>> = LazyLock::new(|| {
    byte_to_char_table()
        .iter()
        .enumerate()
        .map(|(b, &c)| (c, b as u8))
        .collect()
});

/// The bytes a byte-level BPE token string stands for. A token made only of
/// table chars maps char by char; any other token (an added token such as
/// `<|im_start|>` with a char outside the table) stands for its own UTF-8,
/// exactly as the `tokenizers` ByteLevel decoder does.
pub(crate) fn byte_level_token_bytes(token: &str) -> Vec<u8> {
    let mapped: Option<Vec<u8>> = token
        .chars()
        .map(|c| CHAR_TO_BYTE.get(&c).copied())
        .collect();
    mapped.unwrap_or_else(|| token.as_bytes().to_vec())
}

/// The unicode string a byte sequence is written as in a byte-level vocabulary.
#[cfg(test)]
pub(crate) fn bytes_to_byte_level(bytes: &[u8]) -> String {
    let table = byte_to_char_table();
    bytes.iter().map(|&b| table[b as usize]).collect()
}

/// Turns a stream of token byte strings into text as soon as it is valid
/// UTF-8: a token that ends inside a multi-byte character waits for the next.
///
/// Created by [`super::Tokenizer::decode_stream`].
#[derive(Debug, Clone, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// Appends bytes and returns the text that became complete (possibly empty).
    /// Bytes that can never start valid UTF-8 come out as U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(
                        std::str::from_utf8(&self.pending[..valid]).expect("valid prefix"),
                    );
                    match e.error_len() {
                        // Incomplete sequence at the end: keep it for later.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Bytes held back waiting for the rest of a character.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }

    /// Ends the stream: any held-back bytes come out lossily.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_a_bijection() {
        let t = byte_to_char_table();
        let mut seen = std::collections::HashSet::new();
        for c in t {
            assert!(seen.insert(c));
        }
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        for b in 0..=255u8 {
            assert_eq!(byte_level_token_bytes(&bytes_to_byte_level(&[b])), vec![b]);
        }
    }

    #[test]
    fn added_token_text_is_its_own_bytes() {
        assert_eq!(
            byte_level_token_bytes("<|im_start|>"),
            b"<|im_start|>".to_vec()
        );
        assert_eq!(byte_level_token_bytes("ĠParis"), b" Paris".to_vec());
        // '€' is not in the table: the token stands for its UTF-8.
        assert_eq!(byte_level_token_bytes("a€"), "a€".as_bytes().to_vec());
    }

    #[test]
    fn stream_waits_for_complete_chars() {
        let mut s = Utf8Stream::default();
        let e = "é".as_bytes();
        assert_eq!(s.push(b"ab"), "ab");
        assert_eq!(s.push(&e[..1]), "");
        assert_eq!(s.pending(), &e[..1]);
        assert_eq!(s.push(&e[1..]), "é");
        let emoji = "🙂".as_bytes();
        assert_eq!(s.push(&emoji[..3]), "");
        assert_eq!(s.push(&[emoji[3], b'x']), "🙂x");
        assert_eq!(s.push(&[0xFF, b'y']), "\u{FFFD}y");
        assert_eq!(s.push(&e[..1]), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
