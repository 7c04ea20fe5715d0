//! [`MemoryTree`]: the whole tree in memory, built only from [`Appender`] output, for tests and
//! for verifiers that rebuild a log from its entries.

use crate::appender::{AppendError, Appender};
use crate::hash::{Hash, leaf_hash};
use crate::node::NodeId;
use crate::proof::HashReader;

/// Every perfect-subtree hash of a tree, kept per level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    /// Computes what to store; also knows the size and root.
    appender: Appender,
    /// `levels[l][n]` is the hash of node `l/n`; each level only grows.
    levels: Vec<Vec<Hash>>,
}

/// A [`MemoryTree`] was asked for a node it does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("node {0} is not in the tree")]
pub struct MissingNode(pub NodeId);

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// A tree of the given entries, hashed with [`leaf_hash`].
    pub fn from_entries<I, E>(entries: I) -> Result<MemoryTree, AppendError>
    where
        I: IntoIterator<Item = E>,
        E: AsRef<[u8]>,
    {
        let leaves: Vec<Hash> =
            entries.into_iter().map(|entry| leaf_hash(entry.as_ref())).collect();
        let mut tree = MemoryTree::new();
        tree.append_leaf_hashes(&leaves)?;
        Ok(tree)
    }

    /// Appends leaf hashes and stores every node the [`Appender`] emits; returns the new root.
    pub fn append_leaf_hashes(&mut self, leaf_hashes: &[Hash]) -> Result<Hash, AppendError> {
        let appended = self.appender.append(leaf_hashes)?;
        for (id, hash) in appended.nodes {
            self.store(id, hash);
        }
        Ok(appended.root)
    }

    /// Appends one entry; returns its leaf index.
    pub fn append_entry(&mut self, entry: &[u8]) -> Result<u64, AppendError> {
        let index = self.size();
        self.append_leaf_hashes(&[leaf_hash(entry)])?;
        Ok(index)
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.appender.size()
    }

    /// Current root.
    pub fn root(&self) -> Hash {
        self.appender.root()
    }

    /// The stored hash of one node, if present.
    pub fn node(&self, id: NodeId) -> Option<Hash> {
        let index = usize::try_from(id.index).ok()?;
        self.levels.get(usize::from(id.level))?.get(index).copied()
    }

    fn store(&mut self, id: NodeId, hash: Hash) {
        let level = usize::from(id.level);
        if self.levels.len() <= level {
            self.levels.resize_with(level + 1, Vec::new);
        }
        if let Some(row) = self.levels.get_mut(level) {
            debug_assert_eq!(row.len() as u64, id.index, "appender emits nodes in order");
            row.push(hash);
        }
    }
}

impl HashReader for MemoryTree {
    type Error = MissingNode;

    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, MissingNode> {
        ids.iter().map(|id| self.node(*id).ok_or(MissingNode(*id))).collect()
    }
}
