//! DKIM canonicalization (RFC 6376 3.4), our own streaming implementation. It serves the
//! self-verification of every signature mail-auth makes: an independent second implementation
//! catches canonicalization bugs (like mail-auth issue #62, trailing whitespace-only lines)
//! before a message leaves, instead of at the receiver.

/// Streaming body canonicalizer feeding a SHA-256 context.
///
/// Most of a real body is already canonical: lines end in CRLF, words are separated by single
/// spaces, there are no tabs and no trailing whitespace. `write` therefore scans for the few
/// byte patterns canonicalization changes (`clean_len`, 64 bytes at a time) and hands every
/// clean run to SHA-256 straight from the caller's buffer; only the bytes around those
/// patterns (blank lines, tabs, whitespace runs, line ends at a chunk's edge) go through the
/// byte-at-a-time state machine. Both paths produce the same canonical stream.
pub struct BodyCanon {
    relaxed: bool,
    hash: aws_lc_rs::digest::Context,
    /// Line breaks (and, relaxed, whitespace-only lines) held back: trailing empty lines are
    /// not part of the canonical body.
    pending_crlfs: usize,
    /// Relaxed: a run of whitespace inside the line not yet written.
    pending_wsp: bool,
    /// A CR whose LF has not arrived yet.
    pending_cr: bool,
    /// Anything at all written (relaxed: an empty body hashes as nothing).
    wrote: bool,
    /// Output of the byte-at-a-time path, hashed before the next clean run.
    out: Vec<u8>,
}

/// A byte canonicalization leaves alone wherever it appears: not whitespace, not a line end.
fn is_content(b: u8) -> bool {
    !matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// For one 64-byte block, the bit masks of tabs, spaces, CRs and LFs (bit i = byte i).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(unsafe_code)] // SIMD intrinsics; see the SAFETY notes
fn masks64(block: &[u8; 64]) -> [u64; 4] {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut out = [0u64; 4];
    // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64 CPU has it, and the target
    // enables it), so these intrinsics are always available. The loads read 16 bytes at
    // offsets 0, 16, 32 and 48 of a 64-byte array; loadu has no alignment requirement.
    unsafe {
        let wanted = [b'\t', b' ', b'\r', b'\n'].map(|b| _mm_set1_epi8(b as i8));
        for k in 0..4 {
            let v = _mm_loadu_si128(block.as_ptr().add(k * 16).cast::<__m128i>());
            for (m, w) in out.iter_mut().zip(wanted) {
                let bits = _mm_movemask_epi8(_mm_cmpeq_epi8(v, w)) as u32 as u64;
                *m |= bits << (k * 16);
            }
        }
    }
    out
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn masks64(block: &[u8; 64]) -> [u64; 4] {
    masks64_swar(block)
}

/// Portable version: SWAR on 8-byte words.
#[cfg(any(not(target_arch = "x86_64"), test))]
#[inline(always)]
fn masks64_swar(block: &[u8; 64]) -> [u64; 4] {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let mut out = [0u64; 4];
    for (k, word) in block.chunks_exact(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        for (m, c) in out.iter_mut().zip([b'\t', b' ', b'\r', b'\n']) {
            let x = w ^ (u64::from(c) * 0x0101_0101_0101_0101);
            // High bit of each byte set exactly where the byte equals `c`.
            let eq = !(((x & LOW7) + LOW7) | x) & !LOW7;
            // Gather the 8 high bits into one byte.
            let bits = ((eq >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56;
            *m |= bits << (k * 8);
        }
    }
    out
}

/// The length of the longest prefix of `s` that canonicalization would pass through unchanged
/// from a neutral state (nothing pending), given that `s[0]` is content. Relaxed: no tab, no
/// space before a space or CR, no blank line start (LF before CR), every CR followed by LF and
/// every LF preceded by CR. Simple: only the last condition matters, and even that only for
/// the line ends the caller backs off from; the whole of `s` is clean.
#[allow(unsafe_code)] // the AVX2 path, once the CPU is known to have it
fn clean_len(s: &[u8], relaxed: bool) -> usize {
    if !relaxed {
        return s.len();
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked just above).
        return unsafe { clean_len_avx2(s) };
    }
    clean_len_with(s, masks64)
}

/// `clean_len` with the block masks of 32-byte AVX2 compares: half the instructions of SSE2,
/// which matters because this scan runs over every body byte next to SHA-256.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(unsafe_code)] // SIMD intrinsics; see the SAFETY notes
unsafe fn clean_len_avx2(s: &[u8]) -> usize {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    clean_len_with(s, |block: &[u8; 64]| {
        let wanted = [b'\t', b' ', b'\r', b'\n'].map(|b| _mm256_set1_epi8(b as i8));
        let mut out = [0u64; 4];
        for k in 0..2 {
            // SAFETY: 32 bytes at offset 0 or 32 of a 64-byte array; loadu needs no alignment.
            let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(k * 32).cast::<__m256i>()) };
            for (m, w) in out.iter_mut().zip(wanted) {
                let bits = _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, w)) as u32 as u64;
                *m |= bits << (k * 32);
            }
        }
        out
    })
}

#[inline(always)]
fn clean_len_with(s: &[u8], masks64: impl Fn(&[u8; 64]) -> [u64; 4]) -> usize {
    let mut i = 0;
    // `prev_cr`: whether the byte before the current block is a CR (s[0] is content: no).
    let mut prev_cr = 0u64;
    while i + 65 <= s.len() {
        let Ok(block) = <&[u8; 64]>::try_from(&s[i..i + 64]) else {
            break;
        };
        let next = s[i + 64];
        let [tab, sp, cr, lf] = masks64(block);
        // Each "next" mask has bit i set when the byte at i + 1 is that byte.
        let sp_next = (sp >> 1) | (u64::from(next == b' ') << 63);
        let cr_next = (cr >> 1) | (u64::from(next == b'\r') << 63);
        let lf_next = (lf >> 1) | (u64::from(next == b'\n') << 63);
        let cr_prev = (cr << 1) | prev_cr;
        let changed =
            tab | (sp & (sp_next | cr_next)) | (cr & !lf_next) | (lf & !cr_prev) | (lf & cr_next);
        if changed != 0 {
            return i + changed.trailing_zeros() as usize;
        }
        prev_cr = cr >> 63;
        i += 64;
    }
    // The tail, byte by byte with the same rules.
    while i < s.len() {
        let next = s.get(i + 1).copied();
        let changed = match s[i] {
            b'\t' => true,
            b' ' => matches!(next, Some(b' ' | b'\r')),
            b'\r' => next.is_some_and(|n| n != b'\n'),
            b'\n' => (i == 0 || s[i - 1] != b'\r') || next == Some(b'\r'),
            _ => false,
        };
        if changed {
            return i;
        }
        i += 1;
    }
    s.len()
}

impl BodyCanon {
    pub fn new(relaxed: bool) -> BodyCanon {
        BodyCanon {
            relaxed,
            hash: aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256),
            pending_crlfs: 0,
            pending_wsp: false,
            pending_cr: false,
            wrote: false,
            out: Vec::with_capacity(256),
        }
    }

    /// Write what is pending before the next content byte: held-back line breaks and the
    /// single space a whitespace run becomes.
    fn flush_pending(&mut self) {
        for _ in 0..self.pending_crlfs {
            self.out.extend_from_slice(b"\r\n");
        }
        self.pending_crlfs = 0;
        if self.pending_wsp {
            self.out.push(b' ');
            self.pending_wsp = false;
        }
    }

    fn content(&mut self, b: u8) {
        self.flush_pending();
        self.out.push(b);
        self.wrote = true;
    }

    /// The byte-at-a-time state machine.
    fn step(&mut self, b: u8) {
        if self.pending_cr {
            self.pending_cr = false;
            if b == b'\n' {
                self.pending_wsp = false;
                self.pending_crlfs += 1;
                return;
            }
            self.content(b'\r');
        }
        match b {
            b'\r' => self.pending_cr = true,
            b' ' | b'\t' if self.relaxed => self.pending_wsp = true,
            _ => self.content(b),
        }
    }

    pub fn write(&mut self, chunk: &[u8]) {
        let mut pos = 0;
        while pos < chunk.len() {
            if !self.pending_cr && is_content(chunk[pos]) {
                let rest = &chunk[pos..];
                let clean = clean_len(rest, self.relaxed);
                // End the run on content so that nothing is pending after it: line ends and
                // whitespace at its edge go through `step`, which knows what follows.
                let run = rest[..clean]
                    .iter()
                    .rposition(|&b| is_content(b))
                    .map_or(0, |p| p + 1);
                if run > 0 {
                    self.flush_pending();
                    if !self.out.is_empty() {
                        self.hash.update(&self.out);
                        self.out.clear();
                    }
                    self.hash.update(&rest[..run]);
                    self.wrote = true;
                    pos += run;
                    continue;
                }
            }
            self.step(chunk[pos]);
            pos += 1;
        }
        if !self.out.is_empty() {
            self.hash.update(&self.out);
            self.out.clear();
        }
    }

    /// The body hash (`bh=`).
    pub fn finish(mut self) -> Vec<u8> {
        if self.pending_cr {
            self.pending_cr = false;
            self.content(b'\r');
        }
        if self.wrote || !self.relaxed {
            self.out.extend_from_slice(b"\r\n");
        }
        self.hash.update(&self.out);
        self.hash.finish().as_ref().to_vec()
    }
}

/// Canonicalize one header field (`raw` = name, colon, value, folding, CRLF) into `out`.
pub fn header(raw: &[u8], relaxed: bool, out: &mut Vec<u8>) {
    if !relaxed {
        out.extend_from_slice(raw);
        return;
    }
    let colon = raw.iter().position(|b| *b == b':').unwrap_or(raw.len());
    let name = &raw[..colon];
    out.extend(
        name.iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| b.to_ascii_lowercase()),
    );
    out.push(b':');
    let value = raw.get(colon + 1..).unwrap_or(&[]);
    let mut wsp = false;
    let mut started = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => wsp = true,
            _ => {
                if wsp && started {
                    out.push(b' ');
                }
                wsp = false;
                started = true;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The DKIM-Signature field with the value of its `b=` tag removed, as it is hashed.
pub fn without_b_value(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let colon = raw.iter().position(|b| *b == b':').map_or(0, |p| p + 1);
    out.extend_from_slice(&raw[..colon]);
    let value = &raw[colon..];
    for (i, seg) in value.split(|b| *b == b';').enumerate() {
        if i > 0 {
            out.push(b';');
        }
        let eq = seg.iter().position(|b| *b == b'=');
        let is_b = eq.is_some_and(|e| {
            seg[..e]
                .iter()
                .filter(|b| !b.is_ascii_whitespace())
                .eq(b"b".iter())
        });
        match (is_b, eq) {
            (true, Some(e)) => {
                out.extend_from_slice(&seg[..=e]);
                // Keep the line break that ends the field, if the tag was last.
                if seg.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                }
            }
            _ => out.extend_from_slice(seg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(relaxed: bool, chunks: &[&[u8]]) -> Vec<u8> {
        let mut c = BodyCanon::new(relaxed);
        for ch in chunks {
            c.write(ch);
        }
        c.finish()
    }

    fn sha(b: &[u8]) -> Vec<u8> {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    #[test]
    fn rfc6376_examples() {
        // RFC 6376 3.4.5.
        let b = b" C \r\nD \t E\r\n\r\n\r\n";
        assert_eq!(body(true, &[b]), sha(b" C\r\nD E\r\n"));
        assert_eq!(body(false, &[b]), sha(b" C \r\nD \t E\r\n"));
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(body(true, &[]), sha(b""));
        assert_eq!(body(false, &[]), sha(b"\r\n"));
        assert_eq!(body(true, &[b"\r\n \r\n\t\r\n"]), sha(b""));
    }

    #[test]
    fn whitespace_only_trailing_lines_are_dropped_relaxed() {
        assert_eq!(
            body(true, &[b"<p>x</p>\r\n  \r\n \t \r\n"]),
            sha(b"<p>x</p>\r\n")
        );
    }

    #[test]
    fn chunking_does_not_matter() {
        let b = b"a  b\r\n\r\n c\t\r\n\r\n";
        let whole = body(true, &[b]);
        let parts: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(body(true, &parts), whole);
        assert_eq!(body(false, &parts), body(false, &[b]));
    }

    /// The byte-at-a-time state machine alone: the reference the fast path must match.
    fn body_by_bytes(relaxed: bool, body: &[u8]) -> Vec<u8> {
        let mut c = BodyCanon::new(relaxed);
        for &b in body {
            c.step(b);
        }
        c.hash.update(&c.out);
        c.out.clear();
        c.finish()
    }

    /// Random bodies built from the pieces canonicalization cares about, in runs long enough
    /// to cross the scanner's 64-byte blocks.
    fn random_body(rng: &mut impl rand::Rng, crlf_only: bool) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"word",
            b"a",
            b" ",
            b"  ",
            b"\t",
            b"\r\n",
            b"\r\n",
            b"\r\n\r\n",
            b" \r\n",
            b"\t \r\n",
            b"The quick brown fox jumps over the lazy dog and keeps running along the fence",
            b".",
            b"\x00\x0b\x0c\xff",
        ];
        const BARE: &[&[u8]] = &[b"\r", b"\n", b"\n\r", b"\r\r\n"];
        let len = rng.random_range(0..60);
        let mut body = Vec::new();
        for _ in 0..len {
            if !crlf_only && rng.random_ratio(1, 8) {
                body.extend_from_slice(BARE[rng.random_range(0..BARE.len())]);
            } else {
                body.extend_from_slice(PIECES[rng.random_range(0..PIECES.len())]);
            }
        }
        body
    }

    /// Feed `body` in random chunk sizes.
    fn body_chunked(relaxed: bool, body: &[u8], rng: &mut impl rand::Rng) -> Vec<u8> {
        let mut c = BodyCanon::new(relaxed);
        let mut rest = body;
        while !rest.is_empty() {
            let n = rng.random_range(1..=rest.len().min(200));
            c.write(&rest[..n]);
            rest = &rest[n..];
        }
        c.finish()
    }

    #[test]
    fn fast_path_matches_byte_machine_on_random_bodies() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(6376);
        for round in 0..3000 {
            let b = random_body(&mut rng, false);
            for relaxed in [true, false] {
                assert_eq!(
                    body(relaxed, &[&b]),
                    body_by_bytes(relaxed, &b),
                    "round {round}, relaxed {relaxed}, body {:?}",
                    String::from_utf8_lossy(&b)
                );
                assert_eq!(
                    body_chunked(relaxed, &b, &mut rng),
                    body_by_bytes(relaxed, &b),
                    "round {round} chunked, relaxed {relaxed}, body {:?}",
                    String::from_utf8_lossy(&b)
                );
            }
        }
    }

    /// The same `bh=` as mail-auth's one-shot signer on CRLF-only bodies (what the relay
    /// hashes: bare CR and LF are normalised or refused before signing; on those the two
    /// implementations differ by design, mail-auth drops a bare CR).
    #[test]
    fn body_hash_matches_mail_auth_on_random_bodies() {
        use mail_auth::crypto::Ed25519Key;
        use mail_auth::dkim::{Canonicalization, DkimSigner};
        use rand::SeedableRng;
        let rng_key = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng_key).unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(8463);
        for relaxed in [true, false] {
            let c = if relaxed {
                Canonicalization::Relaxed
            } else {
                Canonicalization::Simple
            };
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.as_ref()).unwrap();
            let signer = DkimSigner::from_key(key)
                .domain("example.com")
                .selector("s")
                .headers(["From"])
                .body_canonicalization(c);
            for round in 0..1500 {
                let b = random_body(&mut rng, true);
                let mut message = b"From: a@example.com\r\n\r\n".to_vec();
                message.extend_from_slice(&b);
                let theirs = signer.sign(&message).unwrap().bh;
                assert_eq!(
                    body_chunked(relaxed, &b, &mut rng),
                    theirs,
                    "round {round}, relaxed {relaxed}, body {:?}",
                    String::from_utf8_lossy(&b)
                );
            }
        }
    }

    #[test]
    fn block_masks_are_exact() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(64);
        for _ in 0..2000 {
            let mut block = [0u8; 64];
            for b in block.iter_mut() {
                // Mostly the four bytes of interest and their neighbours (0x08..0x0e, 0x1f..0x21).
                *b = match rng.random_range(0..4) {
                    0 => rng.random(),
                    1 => rng.random_range(0x08..0x0f),
                    2 => rng.random_range(0x1f..0x22),
                    _ => b'a',
                };
            }
            let expected = [b'\t', b' ', b'\r', b'\n'].map(|c| {
                block
                    .iter()
                    .enumerate()
                    .fold(0u64, |m, (i, &b)| m | (u64::from(b == c) << i))
            });
            assert_eq!(masks64(&block), expected);
            assert_eq!(masks64_swar(&block), expected);
        }
    }

    #[test]
    fn long_clean_runs_and_block_edges() {
        // Patterns placed at every offset around the 64-byte block edges.
        for pattern in [
            &b"  "[..],
            b" \r\n",
            b"\t",
            b"\r\n\r\n",
            b"\r\n ",
            b"\rx",
            b"\n",
        ] {
            for at in 0..140 {
                let mut b = vec![b'x'; at];
                b.extend_from_slice(pattern);
                b.extend_from_slice(&[b'y'; 100]);
                b.extend_from_slice(b"\r\n");
                for relaxed in [true, false] {
                    assert_eq!(
                        body(relaxed, &[&b]),
                        body_by_bytes(relaxed, &b),
                        "pattern {pattern:?} at {at}, relaxed {relaxed}"
                    );
                }
            }
        }
    }

    #[test]
    fn relaxed_header() {
        let mut out = Vec::new();
        header(b"SubJect : A  b\r\n\t c \r\n", true, &mut out);
        assert_eq!(out, b"subject:A b c\r\n");
    }

    #[test]
    fn strips_b_value_only() {
        let h = b"DKIM-Signature: v=1; bh=abc; b=xyz\r\n\t123;\r\n";
        assert_eq!(
            without_b_value(h),
            b"DKIM-Signature: v=1; bh=abc; b=;\r\n".to_vec()
        );
        let h = b"DKIM-Signature: v=1; bh=abc; b=xyz\r\n";
        assert_eq!(
            without_b_value(h),
            b"DKIM-Signature: v=1; bh=abc; b=\r\n".to_vec()
        );
    }
}
