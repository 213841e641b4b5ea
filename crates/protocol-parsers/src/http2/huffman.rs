//! HPACK Huffman coding (RFC 7541 Appendix B).
//!
//! The HPACK code is canonical: codes of equal length are consecutive
//! integers and symbols of equal length are ordered by value. So the table is
//! stored as one code length per symbol; codes, per-length limits and the
//! symbol order are derived from it at compile time.

/// Code length in bits of each symbol (0..=255, then 256 = EOS).
const CODE_LEN: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];
const MIN_LEN: usize = 5;
const MAX_LEN: usize = 30;
const EOS: u16 = 256;

struct Tables {
    /// Code of each symbol (right-aligned).
    code: [u32; 257],
    /// For each length `l`: one past the largest code of length `l`
    /// (`first[l] + count[l]`), as a right-aligned `l`-bit integer.
    limit: [u32; MAX_LEN + 1],
    /// First code of each length.
    first: [u32; MAX_LEN + 1],
    /// Index in `sorted` of the first symbol of each length.
    offset: [u16; MAX_LEN + 1],
    /// Symbols ordered by (length, value).
    sorted: [u16; 257],
}

const fn build() -> Tables {
    let mut count = [0u16; MAX_LEN + 1];
    let mut i = 0;
    while i < 257 {
        count[CODE_LEN[i] as usize] += 1;
        i += 1;
    }
    let mut first = [0u32; MAX_LEN + 1];
    let mut limit = [0u32; MAX_LEN + 1];
    let mut offset = [0u16; MAX_LEN + 1];
    let mut code = 0u32;
    let mut off = 0u16;
    let mut l = 1;
    while l <= MAX_LEN {
        first[l] = code;
        offset[l] = off;
        limit[l] = code + count[l] as u32;
        off += count[l];
        code = (code + count[l] as u32) << 1;
        l += 1;
    }
    let mut sorted = [0u16; 257];
    let mut next = offset;
    let mut codes = [0u32; 257];
    let mut l = 1;
    while l <= MAX_LEN {
        let mut s = 0;
        while s < 257 {
            if CODE_LEN[s] as usize == l {
                let k = next[l];
                sorted[k as usize] = s as u16;
                codes[s] = first[l] + (k - offset[l]) as u32;
                next[l] += 1;
            }
            s += 1;
        }
        l += 1;
    }
    Tables {
        code: codes,
        limit,
        first,
        offset,
        sorted,
    }
}

static TABLES: Tables = build();

/// Why a Huffman string could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    /// The EOS symbol appeared inside the string.
    #[error("EOS symbol inside a Huffman string")]
    Eos,
    /// Padding longer than 7 bits or not made of 1 bits.
    #[error("invalid Huffman padding")]
    Padding,
}

/// Decode a Huffman-coded string, appending the octets to `out`.
pub fn decode(src: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let t = &TABLES;
    out.reserve(src.len() + src.len() / 2);
    // Bits not yet consumed, left-aligned in `acc`; `nbits` of them valid.
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    let mut pos = 0;
    loop {
        // Refill to at least 32 valid bits when input remains.
        while nbits <= 56 && pos < src.len() {
            acc |= (src[pos] as u64) << (56 - nbits);
            nbits += 8;
            pos += 1;
        }
        if nbits < MIN_LEN as u32 {
            break;
        }
        // Find the code length: the shortest `l` whose limit exceeds the
        // top `l` bits.
        let mut l = MIN_LEN;
        let mut found = false;
        while l <= MAX_LEN && l as u32 <= nbits {
            let top = (acc >> (64 - l)) as u32;
            if top < t.limit[l] {
                let sym = t.sorted[(t.offset[l] as u32 + (top - t.first[l])) as usize];
                if sym == EOS {
                    return Err(HuffmanError::Eos);
                }
                out.push(sym as u8);
                acc <<= l;
                nbits -= l as u32;
                found = true;
                break;
            }
            l += 1;
        }
        if !found {
            // Not enough bits for a full code: only valid as padding.
            break;
        }
    }
    if pos < src.len() {
        // Cannot happen (refill consumes all input before stopping), but
        // never index past the end: treat as bad padding.
        return Err(HuffmanError::Padding);
    }
    if nbits > 7 {
        return Err(HuffmanError::Padding);
    }
    let mask = if nbits == 0 { 0 } else { !0u64 << (64 - nbits) };
    if acc & mask != mask {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

/// Length in octets of the Huffman encoding of `src`.
pub fn encoded_len(src: &[u8]) -> usize {
    let bits: usize = src.iter().map(|&b| CODE_LEN[b as usize] as usize).sum();
    bits.div_ceil(8)
}

/// Huffman-encode `src`, appending to `out` (padding with 1 bits).
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut nbits: u32 = 0;
    for &b in src {
        let len = CODE_LEN[b as usize] as u32;
        acc = (acc << len) | TABLES.code[b as usize] as u64;
        nbits += len;
        while nbits >= 8 {
            nbits -= 8;
            out.push((acc >> nbits) as u8);
        }
    }
    if nbits > 0 {
        let pad = 8 - nbits;
        out.push(((acc << pad) | ((1u64 << pad) - 1)) as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc7541_c4_examples() {
        // Examples from RFC 7541 C.4.1-C.4.3 and C.6.1.
        let cases = [
            ("f1e3c2e5f23a6ba0ab90f4ff", "www.example.com"),
            ("a8eb10649cbf", "no-cache"),
            ("25a849e95ba97d7f", "custom-key"),
            ("25a849e95bb8e8b4bf", "custom-value"),
            ("6402", "302"),
            ("aec3771a4b", "private"),
            (
                "d07abe941054d444a8200595040b8166e082a62d1bff",
                "Mon, 21 Oct 2013 20:13:21 GMT",
            ),
            (
                "9d29ad171863c78f0b97c8e9ae82ae43d3",
                "https://www.example.com",
            ),
        ];
        for (h, s) in cases {
            let mut out = Vec::new();
            decode(&hex(h), &mut out).unwrap();
            assert_eq!(out, s.as_bytes());
            let mut enc = Vec::new();
            encode(s.as_bytes(), &mut enc);
            assert_eq!(enc, hex(h), "{s}");
            assert_eq!(encoded_len(s.as_bytes()), enc.len());
        }
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut enc = Vec::new();
        encode(&all, &mut enc);
        let mut out = Vec::new();
        decode(&enc, &mut out).unwrap();
        assert_eq!(out, all);
    }

    #[test]
    fn bad_padding_and_eos_are_errors() {
        // 8 bits of 1s are a too-long padding.
        let mut out = Vec::new();
        assert_eq!(decode(&[0xff], &mut out), Err(HuffmanError::Padding));
        // Padding with a 0 bit: '0' is 00000 (5 bits), then 000 padding.
        assert_eq!(decode(&[0x00], &mut out), Err(HuffmanError::Padding));
        // EOS = 30 ones.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xfc], &mut out),
            Err(HuffmanError::Eos)
        );
        assert!(decode(&[], &mut out).is_ok());
    }
}
