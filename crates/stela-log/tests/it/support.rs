//! Helpers shared by the integration tests: hex decoding and naive RFC 6962 definitions
//! written straight from the RFC's recursive text, independent of the crate's iterative code.

use stela_log::{EMPTY_ROOT, Hash, node_hash};

/// Decodes a 64-digit hex hash; test vectors only.
pub fn h(hex: &str) -> Hash {
    stela_log::hash::from_hex(hex).unwrap_or_else(|| panic!("bad test vector {hex}"))
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 §2.1 `MTH(D[n])` over leaf hashes.
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let split = k(n);
            node_hash(&mth(&leaves[..split]), &mth(&leaves[split..]))
        }
    }
}

/// RFC 6962 §2.1.1 `PATH(m, D[n])`.
pub fn path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 {
        return Vec::new();
    }
    let split = k(n);
    if m < split {
        let mut out = path(m, &leaves[..split]);
        out.push(mth(&leaves[split..]));
        out
    } else {
        let mut out = path(m - split, &leaves[split..]);
        out.push(mth(&leaves[..split]));
        out
    }
}

/// RFC 6962 §2.1.2 `PROOF(m, D[n])`.
pub fn consistency(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    fn subproof(m: usize, leaves: &[Hash], whole: bool) -> Vec<Hash> {
        let n = leaves.len();
        if m == n {
            return if whole { Vec::new() } else { vec![mth(leaves)] };
        }
        let split = k(n);
        if m <= split {
            let mut out = subproof(m, &leaves[..split], whole);
            out.push(mth(&leaves[split..]));
            out
        } else {
            let mut out = subproof(m - split, &leaves[split..], false);
            out.push(mth(&leaves[..split]));
            out
        }
    }
    if m == 0 || m == leaves.len() { Vec::new() } else { subproof(m, leaves, true) }
}

/// The shape of a root computation over proof slots, from the RFC's recursion: two
/// (index, size) or (old, new) claims with equal shapes are indistinguishable to any verifier,
/// and claims with different shapes must be told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// The leaf hash being proven.
    Leaf,
    /// The old root handed to a consistency verifier.
    OldRoot,
    /// Proof element number `n`.
    Slot(usize),
    /// An interior node.
    Node(Box<Shape>, Box<Shape>),
}

fn node(left: Shape, right: Shape) -> Shape {
    Shape::Node(Box::new(left), Box::new(right))
}

/// Shape of the root computed from an inclusion proof of leaf `m` in a tree of `n` leaves.
pub fn inclusion_shape(m: u64, n: u64) -> Option<Shape> {
    fn go(m: u64, n: u64, next: &mut usize) -> Shape {
        if n == 1 {
            return Shape::Leaf;
        }
        let split = 1u64 << (63 - (n - 1).leading_zeros());
        if m < split {
            let left = go(m, split, next);
            let slot = Shape::Slot(*next);
            *next += 1;
            node(left, slot)
        } else {
            let right = go(m - split, n - split, next);
            let slot = Shape::Slot(*next);
            *next += 1;
            node(slot, right)
        }
    }
    (m < n).then(|| go(m, n, &mut 0))
}

/// Shapes of (old root, new root) computed from a consistency proof, `0 < m < n`.
pub fn consistency_shape(m: u64, n: u64) -> Option<(Shape, Shape)> {
    fn go(m: u64, begin: u64, end: u64, whole: bool, next: &mut usize) -> (Shape, Shape) {
        if m == end {
            if whole {
                return (Shape::OldRoot, Shape::OldRoot);
            }
            let slot = Shape::Slot(*next);
            *next += 1;
            return (slot.clone(), slot);
        }
        let split = 1u64 << (63 - (end - begin - 1).leading_zeros());
        if m <= begin + split {
            let (old, left) = go(m, begin, begin + split, whole, next);
            let slot = Shape::Slot(*next);
            *next += 1;
            (old, node(left, slot))
        } else {
            let (old_right, right) = go(m, begin + split, end, false, next);
            let slot = Shape::Slot(*next);
            *next += 1;
            (node(slot.clone(), old_right), node(slot, right))
        }
    }
    (0 < m && m < n).then(|| go(m, 0, n, true, &mut 0))
}
