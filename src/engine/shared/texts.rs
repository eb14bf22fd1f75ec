//! A fixed number of texts in shared memory, each written by any process and read by all, with
//! a generation that tells a reader whether the text changed since it last read it.

use std::sync::atomic::Ordering;

use super::lock::SharedLock;
use super::region::SharedRegion;

/// Longest text one slot holds.
pub const SHARED_TEXT_BYTES: usize = 4096;

const TEXT_WORDS: usize = SHARED_TEXT_BYTES / 8;
/// Per slot: the lock, the length, the generation (times written, 0: never), the bytes.
const LOCK: usize = 0;
const LEN: usize = 1;
const GENERATION: usize = 2;
const BYTES: usize = 3;
const SLOT_WORDS: usize = BYTES + TEXT_WORDS;
/// In the length word while a text is being copied in: a writer that died there left it
/// unfinished, and a reader finds no text.
const UNFINISHED: u64 = 1 << 63;

pub struct SharedTexts {
    region: SharedRegion,
    count: usize,
}

impl SharedTexts {
    /// Maps `count` empty texts shared with every process forked after this call.
    pub fn map(count: usize) -> Result<Self, String> {
        Ok(Self {
            region: SharedRegion::map(count * SLOT_WORDS)?,
            count,
        })
    }

    fn slot(&self, index: usize) -> Option<&[std::sync::atomic::AtomicU64]> {
        (index < self.count).then(|| &self.region[index * SLOT_WORDS..(index + 1) * SLOT_WORDS])
    }

    /// How many times text `index` was written (0: never, or no such text).
    pub fn generation(&self, index: usize) -> u64 {
        self.slot(index)
            .map_or(0, |slot| slot[GENERATION].load(Ordering::Acquire))
    }

    /// Replaces text `index`; returns its new generation. `Err` if there is no such text or
    /// `text` is longer than [`SHARED_TEXT_BYTES`].
    pub fn write(&self, index: usize, text: &[u8]) -> Result<u64, String> {
        let slot = self.slot(index).ok_or("no such shared text")?;
        if text.len() > SHARED_TEXT_BYTES {
            return Err(format!("longer than {SHARED_TEXT_BYTES} bytes"));
        }
        let _lock = SharedLock::new(&slot[LOCK]).lock();
        slot[LEN].store(UNFINISHED, Ordering::Relaxed);
        for (word, chunk) in slot[BYTES..].iter().zip(text.chunks(8)) {
            let mut bytes = [0; 8];
            bytes[..chunk.len()].copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
        }
        slot[LEN].store(text.len() as u64, Ordering::Relaxed);
        Ok(slot[GENERATION].fetch_add(1, Ordering::Release) + 1)
    }

    /// Text `index` and its generation, copied into `buffer` (allocated by the caller, so
    /// that nothing is allocated under the lock); an unfinished text (its writer died while
    /// copying it in) reads as empty.
    pub fn read<'b>(
        &self,
        index: usize,
        buffer: &'b mut [u8; SHARED_TEXT_BYTES],
    ) -> (u64, &'b [u8]) {
        let Some(slot) = self.slot(index) else {
            return (0, &buffer[..0]);
        };
        let _lock = SharedLock::new(&slot[LOCK]).lock();
        let len = match slot[LEN].load(Ordering::Relaxed) {
            UNFINISHED => 0,
            len => (len as usize).min(SHARED_TEXT_BYTES),
        };
        for (chunk, word) in buffer[..len].chunks_mut(8).zip(&slot[BYTES..]) {
            let bytes = word.load(Ordering::Relaxed).to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        (slot[GENERATION].load(Ordering::Relaxed), &buffer[..len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_any_length_read_back_with_their_generation() {
        let texts = SharedTexts::map(2).unwrap();
        let mut buffer = Box::new([0; SHARED_TEXT_BYTES]);
        assert_eq!(texts.read(0, &mut buffer), (0, &b""[..]));
        let long = vec![b'x'; SHARED_TEXT_BYTES];
        for (n, text) in [&b"abc"[..], b"0123456789", &long, b""].iter().enumerate() {
            assert_eq!(texts.write(1, text), Ok(n as u64 + 1));
            assert_eq!(texts.read(1, &mut buffer), (n as u64 + 1, *text));
        }
        assert_eq!(texts.generation(0), 0);
        assert!(texts.write(1, &vec![b'x'; SHARED_TEXT_BYTES + 1]).is_err());
        assert!(texts.write(2, b"a").is_err());
    }

    #[test]
    fn a_text_its_writer_left_unfinished_reads_as_empty() {
        let texts = SharedTexts::map(1).unwrap();
        texts.write(0, b"complete").unwrap();
        texts.region[LEN].store(UNFINISHED, Ordering::Relaxed);
        let mut buffer = Box::new([0; SHARED_TEXT_BYTES]);
        assert_eq!(texts.read(0, &mut buffer), (1, &b""[..]));
    }
}
