//! The write side: a compact range over `[0, size)` that takes new leaf hashes and says which
//! perfect-subtree hashes to persist.
//!
//! ```text
//!  size = 6 (0b110)          append leaf 6            append leaf 7
//!  right edge: [2/0, 1/2]    emits 0/6                emits 0/7, 1/3, 2/1, 3/0
//!                            right edge:              right edge: [3/0]
//!                            [2/0, 1/2, 0/6]
//! ```
//!
//! The right edge holds one hash per set bit of `size`, highest level first: exactly the
//! perfect subtrees [`crate::tree_root_node_ids`] lists, so a store restores an appender with
//! one batched read. Each append emits the new leaf plus every perfect subtree it completes;
//! over many appends that is fewer than two nodes per leaf.

use crate::error::ErrorCode;
use crate::hash::{EMPTY_ROOT, Hash, node_hash};
use crate::node::{NodeId, fold_range, range_nodes};

/// Appends leaves to a tree known only by its size and right edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appender {
    /// Number of leaves appended so far.
    size: u64,
    /// Hashes of the perfect subtrees covering `[0, size)`, largest (leftmost) first.
    right_edge: Vec<Hash>,
}

/// What one call to [`Appender::append`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Every perfect subtree completed by the new leaves, leaves included, in the order they
    /// were completed; the store persists all of them.
    pub nodes: Vec<(NodeId, Hash)>,
    /// Tree size after the append.
    pub size: u64,
    /// Root of the tree after the append.
    pub root: Hash,
}

/// Why an [`Appender`] could not be restored or extended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The stored right edge does not have one hash per set bit of the tree size.
    #[error("tree size {size} needs {expected} right-edge hashes, got {got}")]
    WrongRightEdge {
        /// The size the appender was restored at.
        size: u64,
        /// How many hashes that size needs.
        expected: usize,
        /// How many were given.
        got: usize,
    },
    /// The tree would exceed `u64::MAX` leaves.
    #[error("tree size {size} cannot grow by {count} leaves")]
    SizeOverflow {
        /// Size before the append.
        size: u64,
        /// Leaves that were to be appended.
        count: usize,
    },
}

impl AppendError {
    /// The transport-agnostic kind of this error: both mean the store is inconsistent.
    pub fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

impl Default for Appender {
    fn default() -> Self {
        Appender::new()
    }
}

impl Appender {
    /// An appender for the empty tree.
    pub fn new() -> Appender {
        Appender { size: 0, right_edge: Vec::new() }
    }

    /// Restores an appender from the tree size and the hashes of
    /// [`Appender::right_edge_ids`]`(size)`, in that order.
    pub fn restore(size: u64, right_edge: Vec<Hash>) -> Result<Appender, AppendError> {
        let expected = size.count_ones() as usize;
        if right_edge.len() != expected {
            return Err(AppendError::WrongRightEdge { size, expected, got: right_edge.len() });
        }
        Ok(Appender { size, right_edge })
    }

    /// The perfect subtrees a store must read to [`Appender::restore`] at `size`.
    pub fn right_edge_ids(size: u64) -> Vec<NodeId> {
        range_nodes(0, size)
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hashes of the perfect subtrees covering the tree, largest first.
    pub fn right_edge(&self) -> &[Hash] {
        &self.right_edge
    }

    /// Root of the tree: the right fold of the right edge, or [`EMPTY_ROOT`].
    pub fn root(&self) -> Hash {
        fold_range(&self.right_edge).unwrap_or(EMPTY_ROOT)
    }

    /// Appends leaf hashes (already computed with [`crate::leaf_hash`]) and returns the nodes
    /// to persist and the new root. Nothing changes if the tree would overflow.
    pub fn append(&mut self, leaf_hashes: &[Hash]) -> Result<Appended, AppendError> {
        let count = leaf_hashes.len();
        let overflow = AppendError::SizeOverflow { size: self.size, count };
        let new_size = u64::try_from(count)
            .ok()
            .and_then(|count| self.size.checked_add(count))
            .ok_or(overflow)?;
        let mut nodes = Vec::with_capacity(2 * count);
        for leaf in leaf_hashes {
            self.push_leaf(*leaf, &mut nodes);
        }
        debug_assert_eq!(self.size, new_size);
        Ok(Appended { nodes, size: self.size, root: self.root() })
    }

    /// Adds one leaf and merges the equal-sized subtrees it completes.
    fn push_leaf(&mut self, leaf: Hash, nodes: &mut Vec<(NodeId, Hash)>) {
        let index = self.size;
        nodes.push((NodeId::leaf(index), leaf));
        let mut hash = leaf;
        // The trailing ones of the old size are exactly the subtrees the new leaf completes:
        // each is the left sibling of the node built so far.
        let merges = index.trailing_ones();
        for level in 0..merges {
            let left = self.right_edge.pop().unwrap_or(EMPTY_ROOT);
            hash = node_hash(&left, &hash);
            let parent_level = level + 1;
            nodes.push((NodeId::new(parent_level as u8, index >> parent_level), hash));
        }
        self.right_edge.push(hash);
        self.size = index + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    #[test]
    fn emits_each_completed_subtree_once() {
        let mut appender = Appender::new();
        let leaves: Vec<Hash> = (0u8..8).map(|i| leaf_hash(&[i])).collect();
        let appended = appender.append(&leaves).expect("valid");
        let ids: Vec<NodeId> = appended.nodes.iter().map(|(id, _)| *id).collect();
        // 8 leaves, 4 pairs, 2 quads, 1 octet.
        assert_eq!(ids.len(), 15);
        assert_eq!(ids.last(), Some(&NodeId::new(3, 0)));
        assert_eq!(appender.right_edge().len(), 1);
    }

    #[test]
    fn restore_checks_right_edge_length() {
        assert!(Appender::restore(6, vec![[0; 32]]).is_err());
        assert!(Appender::restore(6, vec![[0; 32]; 2]).is_ok());
        assert_eq!(Appender::right_edge_ids(6), vec![NodeId::new(2, 0), NodeId::new(1, 2)]);
    }

    #[test]
    fn overflow_leaves_state_unchanged() {
        let mut appender = Appender::restore(u64::MAX, vec![[7; 32]; 64]).expect("valid");
        let before = appender.clone();
        assert!(matches!(appender.append(&[[1; 32]]), Err(AppendError::SizeOverflow { .. })));
        assert_eq!(appender, before);
    }
}
