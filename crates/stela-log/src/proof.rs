//! The read side: tree roots and RFC 9162 inclusion and consistency proofs, computed from
//! stored perfect-subtree hashes through a [`HashReader`].
//!
//! ```text
//!   tree_root / inclusion_proof / consistency_proof
//!        │  1. RFC 6962 recursion → the ranges whose hashes make the answer
//!        │  2. each range → its perfect subtrees (NodeIds), deduplicated, sorted
//!        ▼
//!   HashReader::read_hashes(&[NodeId])      ← one batched read (one SQL query)
//!        │
//!        ▼  3. fold each range's perfect subtrees right to left (right-edge nodes
//!           are recomputed here, never stored)
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use crate::error::ErrorCode;
use crate::hash::{EMPTY_ROOT, Hash};
use crate::node::{NodeId, consistency_ranges, fold_range, inclusion_ranges, range_nodes};

/// Batched access to stored perfect-subtree hashes.
///
/// Implementations return one hash per id, in the order asked. Callers in this crate always
/// pass distinct ids in increasing `(level, index)` order, so a database can answer with one
/// query. A node that is not stored is an error of the implementation's choosing.
pub trait HashReader {
    /// What a failed read reports.
    type Error;

    /// The hashes of `ids`, in the same order.
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    type Error = R::Error;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        (**self).read_hashes(ids)
    }
}

/// A request that no tree can answer, whatever its contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// The leaf index is not smaller than the tree size.
    #[error("leaf index {index} is not in a tree of size {size}")]
    LeafIndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree size it was asked in.
        size: u64,
    },
    /// A consistency proof was asked from a larger tree to a smaller one.
    #[error("no consistency proof from tree size {old_size} to smaller size {new_size}")]
    SizesOutOfOrder {
        /// The earlier tree size.
        old_size: u64,
        /// The later tree size.
        new_size: u64,
    },
    /// A tile whose hashes would lie beyond any tree of up to `u64::MAX` leaves.
    #[error("tile {level}/{index} lies beyond the largest possible tree")]
    TileOutOfRange {
        /// The tile level (8 tree levels each).
        level: u8,
        /// The tile index.
        index: u64,
    },
}

/// Why a root or proof could not be computed from a [`HashReader`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError<E> {
    /// The request itself is impossible.
    #[error(transparent)]
    Range(#[from] RangeError),
    /// The reader failed.
    #[error("reading stored hashes: {0}")]
    Read(E),
    /// The reader answered with the wrong number of hashes.
    #[error("hash reader returned {got} hashes for {asked} node ids")]
    ReaderCount {
        /// Ids asked for.
        asked: usize,
        /// Hashes returned.
        got: usize,
    },
}

impl RangeError {
    /// The transport-agnostic kind of this error.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::OutOfRange
    }
}

impl<E> TreeError<E> {
    /// The transport-agnostic kind of this error: range errors are the caller's, read errors
    /// are internal.
    pub fn code(&self) -> ErrorCode {
        match self {
            TreeError::Range(range) => range.code(),
            TreeError::Read(_) | TreeError::ReaderCount { .. } => ErrorCode::Internal,
        }
    }
}

/// The perfect subtrees whose hashes make the root of a tree of `size` leaves (none for 0).
pub fn tree_root_node_ids(size: u64) -> Vec<NodeId> {
    range_nodes(0, size)
}

/// The perfect subtrees needed for the inclusion proof of leaf `index` in a tree of `size`.
pub fn inclusion_proof_node_ids(index: u64, size: u64) -> Result<Vec<NodeId>, RangeError> {
    check_index(index, size)?;
    Ok(distinct_ids(&[inclusion_ranges(index, size)]))
}

/// The perfect subtrees needed for the consistency proof from `old_size` to `new_size`.
pub fn consistency_proof_node_ids(old_size: u64, new_size: u64) -> Result<Vec<NodeId>, RangeError> {
    Ok(distinct_ids(&[consistency_plan(old_size, new_size)?]))
}

/// The root of the tree of the first `size` leaves; [`EMPTY_ROOT`] for 0.
pub fn tree_root<R: HashReader>(size: u64, reader: &R) -> Result<Hash, TreeError<R::Error>> {
    if size == 0 {
        return Ok(EMPTY_ROOT);
    }
    let whole_tree: Vec<Range<u64>> = std::iter::once(0..size).collect();
    let mut hashes = read_ranges(reader, &[whole_tree])?;
    hashes.pop().and_then(|mut root| root.pop()).ok_or(TreeError::ReaderCount { asked: 1, got: 0 })
}

/// The RFC 9162 §2.1.3.1 inclusion proof of leaf `index` in the tree of `size` leaves,
/// nearest the leaf first.
pub fn inclusion_proof<R: HashReader>(
    index: u64,
    size: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    let mut proofs = inclusion_proofs(&[index], size, reader)?;
    proofs.pop().ok_or(TreeError::ReaderCount { asked: 1, got: 0 })
}

/// Inclusion proofs of several leaves in the same tree, with a single read of the union of
/// the nodes they need (what a receipt for a batch write wants).
pub fn inclusion_proofs<R: HashReader>(
    indexes: &[u64],
    size: u64,
    reader: &R,
) -> Result<Vec<Vec<Hash>>, TreeError<R::Error>> {
    let mut plans = Vec::with_capacity(indexes.len());
    for &index in indexes {
        check_index(index, size)?;
        plans.push(inclusion_ranges(index, size));
    }
    read_ranges(reader, &plans)
}

/// The RFC 9162 §2.1.4.1 consistency proof from the tree of `old_size` leaves to the tree of
/// `new_size` leaves. Empty when `old_size` is 0 or equals `new_size`.
pub fn consistency_proof<R: HashReader>(
    old_size: u64,
    new_size: u64,
    reader: &R,
) -> Result<Vec<Hash>, TreeError<R::Error>> {
    let plan = consistency_plan(old_size, new_size)?;
    let mut proofs = read_ranges(reader, &[plan])?;
    proofs.pop().ok_or(TreeError::ReaderCount { asked: 1, got: 0 })
}

fn check_index(index: u64, size: u64) -> Result<(), RangeError> {
    if index < size { Ok(()) } else { Err(RangeError::LeafIndexOutOfRange { index, size }) }
}

fn consistency_plan(old_size: u64, new_size: u64) -> Result<Vec<Range<u64>>, RangeError> {
    if old_size > new_size {
        return Err(RangeError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    Ok(consistency_ranges(old_size, new_size))
}

/// Distinct ids of all ranges of all plans, sorted.
fn distinct_ids(plans: &[Vec<Range<u64>>]) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> =
        plans.iter().flatten().flat_map(|range| range_nodes(range.start, range.end)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Reads every node the plans need in one call and folds each range into its hash.
fn read_ranges<R: HashReader>(
    reader: &R,
    plans: &[Vec<Range<u64>>],
) -> Result<Vec<Vec<Hash>>, TreeError<R::Error>> {
    let ids = distinct_ids(plans);
    if ids.is_empty() {
        return Ok(plans.iter().map(|_| Vec::new()).collect());
    }
    let hashes = reader.read_hashes(&ids).map_err(TreeError::Read)?;
    if hashes.len() != ids.len() {
        return Err(TreeError::ReaderCount { asked: ids.len(), got: hashes.len() });
    }
    let by_id: BTreeMap<NodeId, Hash> = ids.into_iter().zip(hashes).collect();
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let mut proof = Vec::with_capacity(plan.len());
        for range in plan {
            let pieces: Vec<Hash> = range_nodes(range.start, range.end)
                .iter()
                .filter_map(|id| by_id.get(id).copied())
                .collect();
            let hash = fold_range(&pieces)
                .ok_or(TreeError::ReaderCount { asked: by_id.len(), got: pieces.len() })?;
            proof.push(hash);
        }
        out.push(proof);
    }
    Ok(out)
}
