//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>): the tree served as static tiles of 256
//! hashes, and the entries as bundles of 256 entries.
//!
//! ```text
//!  tile level 2 ─ hashes of Merkle level 16 ─ tile/2/000.p/1
//!  tile level 1 ─ hashes of Merkle level  8 ─ tile/1/000, tile/1/001.p/17
//!  tile level 0 ─ leaf hashes               ─ tile/0/000 … tile/0/272, tile/0/273.p/112
//!  entries      ─ the entries themselves     ─ tile/entries/000 … tile/entries/273.p/112
//!                                           (tree of 70,000 leaves, the spec's example)
//! ```
//!
//! A tile at level `L`, index `N` holds the perfect subtrees at Merkle level `8·L` with
//! indexes `256·N .. 256·N + width`; the levels in between are recomputed by hashing, so a
//! store of perfect-subtree hashes can serve every tile, and a client holding tiles can
//! compute any root or proof ([`TileHashReader`]).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use crate::error::ErrorCode;
use crate::hash::{HASH_SIZE, Hash, node_hash};
use crate::node::NodeId;
use crate::proof::{HashReader, RangeError, TreeError, tree_root};

/// Merkle levels per tile level.
pub const TILE_HEIGHT: u8 = 8;

/// Hashes in a full tile, entries in a full bundle.
pub const TILE_WIDTH: u16 = 256;

/// Largest tile level the path grammar allows.
pub const MAX_TILE_LEVEL: u8 = 63;

/// Largest entry a bundle can hold (its length is a big-endian `u16`).
pub const MAX_BUNDLE_ENTRY_LEN: usize = u16::MAX as usize;

/// A tile of hashes: level, index, and width (256 for a full tile, 1..=255 for a partial one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    /// Tile level: its hashes are at Merkle level `8 · level`.
    pub level: u8,
    /// Position among the tiles of that level.
    pub index: u64,
    /// Number of hashes, 1..=256.
    pub width: u16,
}

/// An entry bundle: index and width (256 for a full bundle).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryBundleId {
    /// Position among the bundles; bundle `N` holds entries `256·N ..`.
    pub index: u64,
    /// Number of entries, 1..=256.
    pub width: u16,
}

/// What a `tile/…` path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`.
    Hashes(TileId),
    /// `tile/entries/<N>[.p/<W>]`.
    Entries(EntryBundleId),
}

/// Why a tile path or entry bundle was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    /// The path is not a canonical tile or entry-bundle path.
    #[error("invalid tile path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An entry is too long for a bundle.
    #[error("entry {index} of the bundle is {len} bytes, more than {MAX_BUNDLE_ENTRY_LEN}")]
    EntryTooLong {
        /// Position in the bundle.
        index: usize,
        /// Its length.
        len: usize,
    },
    /// A bundle must hold between 1 and 256 entries.
    #[error("entry bundle has {0} entries, expected 1 to 256")]
    BundleWidth(usize),
    /// The bundle bytes end inside an entry.
    #[error("entry bundle is truncated in entry {index}")]
    TruncatedBundle {
        /// The entry being read.
        index: usize,
    },
}

impl TileError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Malformed
    }
}

/// Why [`TileHashReader`] could not produce a hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileFetchError<E> {
    /// The fetch closure failed.
    #[error("fetching {}: {error}", .tile.path())]
    Fetch {
        /// The tile asked for.
        tile: TileId,
        /// The closure's error.
        error: E,
    },
    /// The tile's bytes are not `width · 32` long.
    #[error("tile {} is {got} bytes, expected {expected}", .tile.path())]
    WrongLength {
        /// The tile fetched.
        tile: TileId,
        /// `width · 32`.
        expected: usize,
        /// What came back.
        got: usize,
    },
    /// The node asked for is not complete in the tree the reader was made for.
    #[error("node {node} is not in a tree of size {size}")]
    NotInTree {
        /// The node asked for.
        node: NodeId,
        /// The reader's tree size.
        size: u64,
    },
}

impl<E> TileFetchError<E> {
    /// The transport-agnostic kind of this error: the tiles came from elsewhere, so bad tiles
    /// are a verification failure, not an internal one.
    pub fn code(&self) -> ErrorCode {
        match self {
            TileFetchError::Fetch { .. } => ErrorCode::Internal,
            TileFetchError::WrongLength { .. } => ErrorCode::VerificationFailed,
            TileFetchError::NotInTree { .. } => ErrorCode::OutOfRange,
        }
    }
}

/// Writes `N` as 3-digit groups, all but the last prefixed with `x`: 1234067 → `x001/x234/067`.
fn format_index(index: u64) -> String {
    let mut groups = vec![format!("{:03}", index % 1000)];
    let mut rest = index / 1000;
    while rest > 0 {
        groups.push(format!("x{:03}", rest % 1000));
        rest /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn width_suffix(width: u16) -> String {
    if width >= TILE_WIDTH { String::new() } else { format!(".p/{width}") }
}

impl TileId {
    /// A full tile.
    pub const fn full(level: u8, index: u64) -> TileId {
        TileId { level, index, width: TILE_WIDTH }
    }

    /// Whether the tile holds 256 hashes.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }

    /// `tile/<L>/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/{}/{}{}", self.level, format_index(self.index), width_suffix(self.width))
    }

    /// The perfect subtrees whose hashes, concatenated, are this tile's bytes.
    pub fn node_ids(&self) -> Result<Vec<NodeId>, RangeError> {
        let out_of_range = RangeError::TileOutOfRange { level: self.level, index: self.index };
        let merkle_level = self.level.checked_mul(TILE_HEIGHT).filter(|level| *level < 64);
        let first = self.index.checked_mul(u64::from(TILE_WIDTH));
        let (Some(merkle_level), Some(first)) = (merkle_level, first) else {
            return Err(out_of_range);
        };
        let width = u64::from(self.width.clamp(1, TILE_WIDTH));
        let last =
            NodeId::new(merkle_level, first.checked_add(width - 1).ok_or(out_of_range.clone())?);
        if last.leaf_range().is_none() {
            return Err(out_of_range);
        }
        Ok((0..width).map(|offset| NodeId::new(merkle_level, first + offset)).collect())
    }

    /// The tile at `level`, `index` as it exists in a tree of `size` leaves (full, or partial
    /// with the width that size gives it), or `None` if that tree has no such tile.
    pub fn at_size(level: u8, index: u64, size: u64) -> Option<TileId> {
        let hashes = size.checked_shr(u32::from(level.checked_mul(TILE_HEIGHT)?))?;
        let start = index.checked_mul(u64::from(TILE_WIDTH))?;
        let available = hashes.checked_sub(start).filter(|n| *n > 0)?;
        let width = u16::try_from(available.min(u64::from(TILE_WIDTH))).ok()?;
        Some(TileId { level, index, width })
    }
}

impl EntryBundleId {
    /// A full bundle.
    pub const fn full(index: u64) -> EntryBundleId {
        EntryBundleId { index, width: TILE_WIDTH }
    }

    /// `tile/entries/<N>[.p/<W>]`.
    pub fn path(&self) -> String {
        format!("tile/entries/{}{}", format_index(self.index), width_suffix(self.width))
    }

    /// The level-0 tile holding the leaf hashes of this bundle's entries.
    pub fn tile(&self) -> TileId {
        TileId { level: 0, index: self.index, width: self.width }
    }
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TilePath::Hashes(tile) => f.write_str(&tile.path()),
            TilePath::Entries(bundle) => f.write_str(&bundle.path()),
        }
    }
}

/// A decimal number of at most `max_digits` digits without leading zeros.
fn parse_decimal(text: &str, max_digits: usize) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= max_digits
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if canonical { text.parse().ok() } else { None }
}

/// Parses the `x001/x234/067` form; `None` unless canonical.
fn parse_index(text: &str) -> Option<u64> {
    let groups: Vec<&str> = text.split('/').collect();
    let (last, leading) = groups.split_last()?;
    let mut value: u64 = 0;
    for group in leading.iter().map(|group| group.strip_prefix('x')).chain([Some(*last)]) {
        let group = group?;
        if group.len() != 3 || !group.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: u64 = group.parse().ok()?;
        value = value.checked_mul(1000)?.checked_add(digits)?;
    }
    (format_index(value) == text).then_some(value)
}

/// Parses a tile or entry-bundle path (relative to the log prefix) strictly: only the exact
/// form [`TileId::path`] and [`EntryBundleId::path`] write is accepted.
pub fn parse_tile_path(path: &str) -> Result<TilePath, TileError> {
    let invalid = |reason| TileError::InvalidPath { path: path.to_owned(), reason };
    let rest = path.strip_prefix("tile/").ok_or(invalid("does not start with tile/"))?;
    let (kind, rest) = rest.split_once('/').ok_or(invalid("missing tile index"))?;
    let (index_text, width) = match rest.split_once(".p/") {
        None => (rest, TILE_WIDTH),
        Some((index_text, width_text)) => {
            let width = parse_decimal(width_text, 3)
                .filter(|w| (1..u64::from(TILE_WIDTH)).contains(w))
                .ok_or(invalid("partial width is not a number from 1 to 255"))?;
            (index_text, u16::try_from(width).map_err(|_| invalid("partial width too large"))?)
        }
    };
    let index =
        parse_index(index_text).ok_or(invalid("index is not canonical x001/x234/067 form"))?;
    if kind == "entries" {
        return Ok(TilePath::Entries(EntryBundleId { index, width }));
    }
    let level = parse_decimal(kind, 2)
        .filter(|level| *level <= u64::from(MAX_TILE_LEVEL))
        .and_then(|level| u8::try_from(level).ok())
        .ok_or(invalid("level is not a number from 0 to 63"))?;
    Ok(TilePath::Hashes(TileId { level, index, width }))
}

/// The tiles that exist at `new_size` but not (with the same content) at `old_size`: every
/// newly full tile and the new partial tile of each level. All tiles of the tree when
/// `old_size` is 0; none when `old_size >= new_size`.
pub fn tiles_for_growth(old_size: u64, new_size: u64) -> Vec<TileId> {
    let mut tiles = Vec::new();
    if old_size >= new_size {
        return tiles;
    }
    let width = u64::from(TILE_WIDTH);
    for level in 0..u8::MAX {
        let Some(shift) = level.checked_mul(TILE_HEIGHT).filter(|shift| *shift < 64) else {
            break;
        };
        let old_hashes = old_size >> shift;
        let new_hashes = new_size >> shift;
        if new_hashes == 0 {
            break;
        }
        if old_hashes == new_hashes {
            continue;
        }
        for index in old_hashes / width..new_hashes / width {
            tiles.push(TileId::full(level, index));
        }
        let index = new_hashes / width;
        if let Ok(partial) = u16::try_from(new_hashes % width)
            && partial > 0
        {
            tiles.push(TileId { level, index, width: partial });
        }
    }
    tiles
}

/// The entry bundles that exist at `new_size` but not (with the same content) at `old_size`.
pub fn entry_bundles_for_growth(old_size: u64, new_size: u64) -> Vec<EntryBundleId> {
    tiles_for_growth(old_size, new_size)
        .into_iter()
        .filter(|tile| tile.level == 0)
        .map(|tile| EntryBundleId { index: tile.index, width: tile.width })
        .collect()
}

/// Assembles a tile's bytes (its hashes concatenated) from stored perfect subtrees.
pub fn read_tile<R: HashReader>(tile: &TileId, reader: &R) -> Result<Vec<u8>, TreeError<R::Error>> {
    let ids = tile.node_ids()?;
    let hashes = reader.read_hashes(&ids).map_err(TreeError::Read)?;
    if hashes.len() != ids.len() {
        return Err(TreeError::ReaderCount { asked: ids.len(), got: hashes.len() });
    }
    Ok(hashes.concat())
}

/// Encodes entries as a bundle: each a big-endian `u16` length then its bytes.
pub fn encode_entry_bundle<E: AsRef<[u8]>>(entries: &[E]) -> Result<Vec<u8>, TileError> {
    if entries.is_empty() || entries.len() > usize::from(TILE_WIDTH) {
        return Err(TileError::BundleWidth(entries.len()));
    }
    let mut out = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let entry = entry.as_ref();
        let len = u16::try_from(entry.len())
            .map_err(|_| TileError::EntryTooLong { index, len: entry.len() })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Decodes a bundle into its entries; rejects truncation, trailing bytes that do not form an
/// entry, and bundles of 0 or more than 256 entries.
pub fn decode_entry_bundle(bytes: &[u8]) -> Result<Vec<Vec<u8>>, TileError> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let index = entries.len();
        if index >= usize::from(TILE_WIDTH) {
            return Err(TileError::BundleWidth(index + 1));
        }
        let [high, low, tail @ ..] = rest else {
            return Err(TileError::TruncatedBundle { index });
        };
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        if tail.len() < len {
            return Err(TileError::TruncatedBundle { index });
        }
        let (entry, tail) = tail.split_at(len);
        entries.push(entry.to_vec());
        rest = tail;
    }
    if entries.is_empty() {
        return Err(TileError::BundleWidth(0));
    }
    Ok(entries)
}

/// A [`HashReader`] over the tiles of a tree of known size, fetched by a closure (for example
/// over HTTP from `<prefix>/tile/…`); each tile is fetched at most once per reader.
///
/// Nothing fetched is trusted: compare [`TileHashReader`]'s roots with a signed checkpoint
/// ([`root_from_tiles`]) before using proofs built from it.
pub struct TileHashReader<F> {
    size: u64,
    fetch: F,
    cache: RefCell<BTreeMap<TileId, Vec<Hash>>>,
}

impl<F> fmt::Debug for TileHashReader<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TileHashReader").field("size", &self.size).finish_non_exhaustive()
    }
}

impl<F, E> TileHashReader<F>
where
    F: Fn(&TileId) -> Result<Vec<u8>, E>,
{
    /// A reader for the tree of `size` leaves.
    pub fn new(size: u64, fetch: F) -> TileHashReader<F> {
        TileHashReader { size, fetch, cache: RefCell::new(BTreeMap::new()) }
    }

    /// The hashes of a tile, fetched once and checked for length.
    fn tile_hashes(&self, tile: TileId) -> Result<Vec<Hash>, TileFetchError<E>> {
        if let Some(hashes) = self.cache.borrow().get(&tile) {
            return Ok(hashes.clone());
        }
        let bytes = (self.fetch)(&tile).map_err(|error| TileFetchError::Fetch { tile, error })?;
        let expected = usize::from(tile.width) * HASH_SIZE;
        if bytes.len() != expected {
            return Err(TileFetchError::WrongLength { tile, expected, got: bytes.len() });
        }
        let hashes: Vec<Hash> =
            bytes.chunks_exact(HASH_SIZE).filter_map(|chunk| Hash::try_from(chunk).ok()).collect();
        self.cache.borrow_mut().insert(tile, hashes.clone());
        Ok(hashes)
    }

    fn read_one(&self, node: NodeId) -> Result<Hash, TileFetchError<E>> {
        let not_in_tree = TileFetchError::NotInTree { node, size: self.size };
        if node.leaf_range().is_none_or(|range| range.end > self.size) {
            return Err(not_in_tree);
        }
        let tile_level = node.level / TILE_HEIGHT;
        let depth = node.level % TILE_HEIGHT;
        // Index of the node's leftmost descendant among the tile's hashes; cannot overflow
        // because the node's leaf range fits in u64.
        let first = node.index << depth;
        let width = u64::from(TILE_WIDTH);
        let tile = TileId::at_size(tile_level, first / width, self.size).ok_or(not_in_tree)?;
        let hashes = self.tile_hashes(tile)?;
        let offset = usize::try_from(first % width).unwrap_or(usize::MAX);
        let count = 1usize << depth;
        let below = hashes
            .get(offset..offset.saturating_add(count))
            .ok_or(TileFetchError::NotInTree { node, size: self.size })?;
        Ok(perfect_root(below))
    }
}

/// Root of a perfect subtree from its `2^k` bottom hashes.
fn perfect_root(hashes: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                [single] => *single,
                _ => crate::hash::EMPTY_ROOT,
            })
            .collect();
    }
    level.first().copied().unwrap_or(crate::hash::EMPTY_ROOT)
}

impl<F, E> HashReader for TileHashReader<F>
where
    F: Fn(&TileId) -> Result<Vec<u8>, E>,
{
    type Error = TileFetchError<E>;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        ids.iter().map(|id| self.read_one(*id)).collect()
    }
}

/// Recomputes the root of the tree of `size` leaves from its tiles; the caller compares it with
/// the root of a verified checkpoint.
pub fn root_from_tiles<F, E>(size: u64, fetch: F) -> Result<Hash, TreeError<TileFetchError<E>>>
where
    F: Fn(&TileId) -> Result<Vec<u8>, E>,
{
    tree_root(size, &TileHashReader::new(size, fetch))
}
