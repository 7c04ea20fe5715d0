//! Addresses of perfect subtrees ([`NodeId`]) and the arithmetic that splits any RFC 6962
//! subtree into them.
//!
//! A perfect subtree at level `L`, index `N` covers leaves `[N·2^L, (N+1)·2^L)`. These are the
//! only hashes a store keeps (they never change once written, and they are exactly what tlog
//! tiles are made of); every other node of an RFC 6962 tree sits on the right edge of some tree
//! size and is recomputed from perfect subtrees when needed.

use std::fmt;
use std::ops::Range;

use crate::hash::{Hash, node_hash};

/// The address of a perfect subtree: `level` 0 is a leaf, `level` L covers `2^L` leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    /// Height above the leaves, 0..=63.
    pub level: u8,
    /// Position among the nodes of that level, counted from the left from 0.
    pub index: u64,
}

impl NodeId {
    /// The node at `level`, `index`.
    pub const fn new(level: u8, index: u64) -> NodeId {
        NodeId { level, index }
    }

    /// The leaf with the given index.
    pub const fn leaf(index: u64) -> NodeId {
        NodeId { level: 0, index }
    }

    /// The leaves this node covers, or `None` when the range does not fit in `u64`.
    pub fn leaf_range(&self) -> Option<Range<u64>> {
        let width = 1u64.checked_shl(u32::from(self.level))?;
        let start = self.index.checked_mul(width)?;
        let end = start.checked_add(width)?;
        Some(start..end)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.level, self.index)
    }
}

/// The largest power of two strictly smaller than `n` (RFC 6962's split point `k`); `n >= 2`.
pub(crate) fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The perfect subtrees covering `[begin, end)`, left to right.
///
/// For the ranges this crate asks about (whole trees `[0, n)` and the subtrees RFC 6962's
/// recursion produces), `begin` is aligned to the range's width rounded up to a power of two,
/// so the pieces come out in strictly decreasing size, one per set bit of `end - begin`; the
/// range's hash is then the right fold of the pieces ([`fold_range`]).
pub(crate) fn range_nodes(begin: u64, end: u64) -> Vec<NodeId> {
    let mut nodes = Vec::with_capacity((end - begin).count_ones() as usize);
    let mut start = begin;
    while start < end {
        let remaining = end - start;
        let alignment = if start == 0 { 63 } else { start.trailing_zeros() };
        let fits = 63 - remaining.leading_zeros();
        let level = alignment.min(fits);
        nodes.push(NodeId { level: level as u8, index: start >> level });
        start += 1u64 << level;
    }
    debug_assert!(nodes.windows(2).all(|pair| pair[0].level > pair[1].level));
    nodes
}

/// The RFC 6962 hash of a range from the hashes of its [`range_nodes`], left to right:
/// `node(h0, node(h1, … node(h[n-2], h[n-1])))`. `None` for an empty slice.
pub(crate) fn fold_range(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, left| node_hash(left, &acc)))
}

/// Ranges whose hashes form the inclusion proof of leaf `index` in a tree of `size` leaves,
/// in proof order (nearest the leaf first). Requires `index < size`.
pub(crate) fn inclusion_ranges(index: u64, size: u64) -> Vec<Range<u64>> {
    debug_assert!(index < size);
    let mut ranges = Vec::new();
    let (mut begin, mut end) = (0u64, size);
    while end - begin > 1 {
        let middle = begin + split_point(end - begin);
        if index < middle {
            ranges.push(middle..end);
            end = middle;
        } else {
            ranges.push(begin..middle);
            begin = middle;
        }
    }
    ranges.reverse();
    ranges
}

/// Ranges whose hashes form the consistency proof from `old_size` to `new_size` (RFC 9162
/// §2.1.4.1 `SUBPROOF`), in proof order. Requires `0 < old_size < new_size`.
pub(crate) fn consistency_ranges(old_size: u64, new_size: u64) -> Vec<Range<u64>> {
    debug_assert!(0 < old_size && old_size < new_size);
    let mut ranges = Vec::new();
    let (mut begin, mut end) = (0u64, new_size);
    // True while the subtree being looked at starts at 0, i.e. its old part is the whole old
    // tree, whose root the verifier already has.
    let mut whole_old_tree = true;
    loop {
        if old_size == end {
            if !whole_old_tree {
                ranges.push(begin..end);
            }
            break;
        }
        let middle = begin + split_point(end - begin);
        if old_size <= middle {
            ranges.push(middle..end);
            end = middle;
        } else {
            ranges.push(begin..middle);
            begin = middle;
            whole_old_tree = false;
        }
    }
    ranges.reverse();
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(u64::MAX), 1 << 63);
        assert_eq!(split_point((1 << 63) + 1), 1 << 63);
    }

    #[test]
    fn range_nodes_of_whole_trees() {
        assert_eq!(range_nodes(0, 0), vec![]);
        assert_eq!(range_nodes(0, 1), vec![NodeId::new(0, 0)]);
        assert_eq!(
            range_nodes(0, 7),
            vec![NodeId::new(2, 0), NodeId::new(1, 2), NodeId::new(0, 6)]
        );
        assert_eq!(range_nodes(4, 7), vec![NodeId::new(1, 2), NodeId::new(0, 6)]);
        assert_eq!(range_nodes(0, u64::MAX).len(), 64);
    }

    #[test]
    fn leaf_range_checks_overflow() {
        assert_eq!(NodeId::new(3, 2).leaf_range(), Some(16..24));
        assert_eq!(NodeId::new(63, 1).leaf_range(), None);
        assert_eq!(NodeId::new(64, 0).leaf_range(), None);
    }
}
