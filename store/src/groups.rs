//! A blob's BLAKE3 tree cut into groups: the chaining values of its
//! consecutive groups of [`group_len`] bytes, from which its hash follows.
//!
//! With the group hashes of a blob, checked once against the blob's hash, a
//! receiver verifies each group as it arrives (and the groups it already
//! holds when it resumes), instead of the whole blob at its end. A group is
//! a power of two of BLAKE3 chunks, so each one is a subtree of the blob's
//! BLAKE3 tree (section 2.1 of the BLAKE3 paper): hashed on its own at its
//! offset, and merged pairwise, level by level, into the root.
//!
//! A blob of one group (at most [`MIN_GROUP_LEN`] bytes) has no group
//! hashes: it is verified by its hash alone.

use blake3::hazmat::{HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};

use crate::BlobHash;

/// The chaining value of one group.
pub type GroupHash = [u8; 32];

/// The smallest group: 64 BLAKE3 chunks.
pub const MIN_GROUP_LEN: u64 = 64 * 1024;

/// The most groups a blob is cut into: a blob's group hashes take at most
/// 32 × this bytes (512 KiB), whatever its size.
pub const MAX_GROUPS: u64 = 16 * 1024;

/// The group length for a blob of `size` bytes: [`MIN_GROUP_LEN`], doubled
/// until the blob has at most [`MAX_GROUPS`] groups.
pub fn group_len(size: u64) -> u64 {
    let mut len = MIN_GROUP_LEN;
    while size.div_ceil(len) > MAX_GROUPS {
        len *= 2;
    }
    len
}

/// How many groups a blob of `size` bytes has (at least one).
pub fn group_count(size: u64) -> u64 {
    size.div_ceil(group_len(size)).max(1)
}

/// The chaining value of the group at `offset` (a multiple of its length)
/// of a blob with more than one group.
pub fn group_hash(offset: u64, bytes: &[u8]) -> GroupHash {
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(offset);
    hasher.update(bytes);
    hasher.finalize_non_root()
}

/// The blob hash that `groups` (two or more) merge into; `None` for fewer.
pub fn root_of(groups: &[GroupHash]) -> Option<BlobHash> {
    if groups.len() < 2 {
        return None;
    }
    let mut level = groups.to_vec();
    while level.len() > 2 {
        level = merge_level(&level);
    }
    Some(BlobHash::from(merge_subtrees_root(
        &level[0],
        &level[1],
        Mode::Hash,
    )))
}

/// One level up: adjacent pairs merged, an odd last one moved up as it is.
fn merge_level(level: &[GroupHash]) -> Vec<GroupHash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [left, right] => merge_subtrees_non_root(left, right, Mode::Hash),
            [one] => *one,
            _ => unreachable!("chunks(2) yields one or two"),
        })
        .collect()
}

/// Whether `groups` are the group hashes of a blob of `size` bytes hashing
/// to `hash`: as many as it has groups, merging into its hash. A blob of
/// one group has none.
pub fn check(groups: &[GroupHash], size: u64, hash: &BlobHash) -> bool {
    let count = group_count(size);
    if count == 1 {
        return groups.is_empty();
    }
    groups.len() as u64 == count && root_of(groups).as_ref() == Some(hash)
}

/// Encodes group hashes one after another.
pub fn encode(groups: &[GroupHash]) -> Vec<u8> {
    groups.concat()
}

/// Decodes [`encode`]d group hashes; `None` unless the length is a
/// multiple of 32.
pub fn decode(bytes: &[u8]) -> Option<Vec<GroupHash>> {
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| {
                let mut g = [0u8; 32];
                g.copy_from_slice(c);
                g
            })
            .collect(),
    )
}

/// Hashes content streamed through it into its blob hash and its group
/// hashes, hashing each byte once: groups of [`MIN_GROUP_LEN`] as the bytes
/// come, merged into the blob's own group length at the end.
pub struct GroupHasher {
    /// Hashes of the complete minimal groups so far.
    done: Vec<GroupHash>,
    /// The group being filled, and how much of it is.
    current: blake3::Hasher,
    filled: u64,
}

impl std::fmt::Debug for GroupHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupHasher")
            .field("groups", &self.done.len())
            .field("filled", &self.filled)
            .finish()
    }
}

impl Default for GroupHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl GroupHasher {
    /// A hasher of content from its first byte.
    pub fn new() -> Self {
        Self {
            done: Vec::new(),
            current: blake3::Hasher::new(),
            filled: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.done.len() as u64 * MIN_GROUP_LEN + self.filled
    }

    /// Whether nothing was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hashes the next bytes of the content.
    pub fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.filled == MIN_GROUP_LEN {
                // More follows: the full group is not the root.
                self.done.push(self.current.finalize_non_root());
                self.current = blake3::Hasher::new();
                self.current
                    .set_input_offset(self.done.len() as u64 * MIN_GROUP_LEN);
                self.filled = 0;
            }
            let take = (MIN_GROUP_LEN - self.filled).min(bytes.len() as u64) as usize;
            self.current.update(&bytes[..take]);
            self.filled += take as u64;
            bytes = &bytes[take..];
        }
    }

    /// Hashes everything `reader` yields, in pieces of 256 KiB.
    ///
    /// # Errors
    /// The reader's.
    pub fn update_from(&mut self, mut reader: impl std::io::Read) -> std::io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The content's hash and its group hashes (at [`group_len`] of its
    /// size; none for one group).
    pub fn finalize(mut self) -> (BlobHash, Vec<GroupHash>) {
        if self.done.is_empty() {
            return (BlobHash::from(self.current.finalize()), Vec::new());
        }
        let size = self.len();
        self.done.push(self.current.finalize_non_root());
        let mut groups = self.done;
        let mut len = MIN_GROUP_LEN;
        while len < group_len(size) {
            groups = merge_level(&groups);
            len *= 2;
        }
        let hash = root_of(&groups).unwrap_or_else(|| {
            // A blob longer than one minimal group has two groups at least
            // at every level below its own group length.
            unreachable!("at least two groups")
        });
        (hash, groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize, seed: u8) -> Vec<u8> {
        let mut state = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(seed);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn streamed_hashing_gives_blake3_and_checkable_groups() {
        let g = MIN_GROUP_LEN as usize;
        for len in [
            0,
            1,
            1024,
            g - 1,
            g,
            g + 1,
            2 * g,
            3 * g + 17,
            8 * g,
            1_234_567,
        ] {
            let data = content(len, len as u8);
            for piece in [1000, 4096, 65_536, 300_000] {
                let mut hasher = GroupHasher::new();
                for part in data.chunks(piece) {
                    hasher.update(part);
                }
                assert_eq!(hasher.len(), len as u64);
                let (hash, groups) = hasher.finalize();
                assert_eq!(hash, BlobHash::from(blake3::hash(&data)), "len {len}");
                assert!(check(&groups, len as u64, &hash), "len {len}");
                // Each group hashes on its own to its hash.
                let glen = group_len(len as u64) as usize;
                if groups.is_empty() {
                    continue;
                }
                for (i, part) in data.chunks(glen).enumerate() {
                    assert_eq!(group_hash((i * glen) as u64, part), groups[i]);
                }
            }
        }
    }

    #[test]
    fn large_blobs_get_longer_groups_and_at_most_max_groups() {
        assert_eq!(group_len(1 << 30), MIN_GROUP_LEN);
        assert_eq!(group_len((1 << 30) + 1), 2 * MIN_GROUP_LEN);
        assert_eq!(group_count(64 << 30), MAX_GROUPS);
        // Merged groups still check: a blob cut into 128 KiB groups.
        let saved = content(3 * 65_536 + 5, 9);
        let (hash, groups) = {
            let mut h = GroupHasher::new();
            h.update(&saved);
            h.finalize()
        };
        let doubled = merge_level(&groups);
        assert_eq!(doubled.len(), 2);
        assert_eq!(root_of(&doubled), Some(hash));
    }

    #[test]
    fn wrong_groups_do_not_check() {
        let data = content(5 * MIN_GROUP_LEN as usize + 3, 1);
        let mut h = GroupHasher::new();
        h.update(&data);
        let (hash, groups) = h.finalize();
        let size = data.len() as u64;
        assert!(check(&groups, size, &hash));
        let mut flipped = groups.clone();
        flipped[3][0] ^= 1;
        assert!(!check(&flipped, size, &hash));
        assert!(!check(&groups[..5], size, &hash));
        assert!(!check(&groups, size + MIN_GROUP_LEN, &hash));
        assert!(!check(&[], size, &hash));
        assert_eq!(decode(&encode(&groups)), Some(groups));
        assert_eq!(decode(&[0; 33]), None);
    }
}
