//! tlog-tiles: path vectors from the C2SP spec text and from golang.org/x/mod/sumdb/tlog
//! `tlog_test.go` (adapted: C2SP paths have no height element and say `entries`, not `data`),
//! the spec's 70,000-leaf example, bundles, and roots recomputed from served tiles.

use std::cell::Cell;
use std::collections::BTreeMap;

use stela_log::tile::TILE_WIDTH;
use stela_log::{
    EntryBundleId, MemoryTree, TileFetchError, TileHashReader, TileId, TilePath, TreeError,
    decode_entry_bundle, encode_entry_bundle, entry_bundles_for_growth, inclusion_proof, leaf_hash,
    parse_tile_path, read_tile, root_from_tiles, tiles_for_growth, tree_root, verify_inclusion,
};

fn hashes(level: u8, index: u64, width: u16) -> TilePath {
    TilePath::Hashes(TileId { level, index, width })
}

#[test]
fn path_vectors() {
    let vectors = [
        // C2SP tlog-tiles: "index 1234067 will be encoded as x001/x234/067".
        ("tile/0/x001/x234/067", hashes(0, 1234067, 256)),
        ("tile/0/001", hashes(0, 1, 256)),
        ("tile/0/001.p/5", hashes(0, 1, 5)),
        ("tile/5/x123/x456/078", hashes(5, 123456078, 256)),
        ("tile/5/x123/x456/078.p/2", hashes(5, 123456078, 2)),
        ("tile/1/x003/x057/500", hashes(1, 3057500, 256)),
        ("tile/63/000", hashes(63, 0, 256)),
        ("tile/0/999", hashes(0, 999, 256)),
        ("tile/0/x001/000", hashes(0, 1000, 256)),
        ("tile/0/x018/x446/x744/x073/x709/x551/615", hashes(0, u64::MAX, 256)),
        ("tile/entries/x003/x057/500", TilePath::Entries(EntryBundleId::full(3057500))),
        ("tile/entries/000.p/255", TilePath::Entries(EntryBundleId { index: 0, width: 255 })),
    ];
    for (path, want) in vectors {
        assert_eq!(parse_tile_path(path), Ok(want), "{path}");
        assert_eq!(want.to_string(), path);
    }
}

#[test]
fn non_canonical_paths_are_rejected() {
    let bad = [
        "tile/5/123/456/078",
        "tile/-1/123/456/078",
        "tile/1/data/x003/x057/500",
        "tile/1/x003/x057/500/",
        "tile/00/001",
        "tile/64/001",
        "tile/0/1",
        "tile/0/0001",
        "tile/0/x001",
        "tile/0/x000/001",
        "tile/0/001.p/0",
        "tile/0/001.p/256",
        "tile/0/001.p/05",
        "tile/0/001.p/",
        "tile/0/001.p/5/",
        "tile/0/001.p/+5",
        "tile/0/x018/x446/x744/x073/x709/x551/616",
        "tile/0/x001/x000/x000/x000/x000/x000/x000/000",
        "tile/0/",
        "tile/0",
        "tile/",
        "/tile/0/001",
        "tiles/0/001",
        "tile/entries/001.p/x5",
        "tile/0/-01",
        "tile/0/0 1",
    ];
    for path in bad {
        assert!(parse_tile_path(path).is_err(), "accepted {path:?}");
    }
}

/// C2SP tlog-tiles: "a tree of size 70,000 will be represented by 273 full level 0 tiles, one
/// partial level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
/// 17, and one partial level 2 tile of width 1"; "a tree of size 256 will be represented by a
/// full level 0 tile and a partial level 1 tile of width 1".
#[test]
fn spec_examples_of_tiles_for_a_size() {
    let tiles = tiles_for_growth(0, 70_000);
    let count = |level: u8, full: bool| {
        tiles.iter().filter(|t| t.level == level && t.is_full() == full).count()
    };
    assert_eq!(count(0, true), 273);
    assert_eq!(count(1, true), 1);
    assert_eq!(count(2, true), 0);
    let partial: Vec<TileId> = tiles.iter().copied().filter(|t| !t.is_full()).collect();
    assert_eq!(
        partial,
        vec![
            TileId { level: 0, index: 273, width: 112 },
            TileId { level: 1, index: 1, width: 17 },
            TileId { level: 2, index: 0, width: 1 },
        ]
    );
    assert_eq!(tiles.len(), 277);
    assert_eq!(
        tiles_for_growth(0, 256),
        vec![TileId::full(0, 0), TileId { level: 1, index: 0, width: 1 }]
    );
    assert_eq!(TileId::at_size(1, 1, 70_000), Some(TileId { level: 1, index: 1, width: 17 }));
    assert_eq!(TileId::at_size(1, 2, 70_000), None);
    assert_eq!(TileId::at_size(3, 0, 70_000), None);
}

/// golang.org/x/mod/sumdb/tlog `TestNewTilesForSize` at tile height 8 instead of 10.
#[test]
fn tiles_for_growth_counts() {
    for (old, new, want) in [
        (1, 1, 0),
        (100, 101, 1),
        (255, 257, 3),
        (256, 260, 1),
        (262, 500, 1),
        (262, 2500, 10),
        // Worked by hand: level 0 gains full tiles 1..=9 and partial 10 (width 40); level 1
        // gains partial 0 (width 10).
        (260, 2600, 11),
        (70_000, 0, 0),
    ] {
        assert_eq!(tiles_for_growth(old, new).len(), want, "{old} -> {new}");
    }
    assert_eq!(
        entry_bundles_for_growth(255, 257),
        vec![EntryBundleId::full(0), EntryBundleId { index: 1, width: 1 }]
    );
    // The largest tree: levels 0..=7 and nothing beyond.
    assert!(tiles_for_growth(u64::MAX - 1, u64::MAX).iter().all(|t| t.level <= 7));
}

#[test]
fn tile_node_ids() {
    let ids = TileId { level: 1, index: 2, width: 3 }.node_ids().expect("in range");
    let want: Vec<stela_log::NodeId> =
        (512..515).map(|index| stela_log::NodeId::new(8, index)).collect();
    assert_eq!(ids, want);
    assert!(TileId::full(8, 0).node_ids().is_err());
    assert!(TileId::full(7, 1 << 56).node_ids().is_err());
    assert!(TileId::full(0, u64::MAX).node_ids().is_err());
}

#[test]
fn bundles_round_trip_and_reject_garbage() {
    let entries: Vec<Vec<u8>> = vec![b"".to_vec(), b"a".to_vec(), vec![7; 65535]];
    let bundle = encode_entry_bundle(&entries).expect("fits");
    assert_eq!(&bundle[..5], &[0, 0, 0, 1, b'a']);
    assert_eq!(decode_entry_bundle(&bundle), Ok(entries));
    assert!(encode_entry_bundle(&[vec![0u8; 65536]]).is_err());
    assert!(encode_entry_bundle::<Vec<u8>>(&[]).is_err());
    assert!(encode_entry_bundle(&vec![b"x".to_vec(); 257]).is_err());
    assert!(encode_entry_bundle(&vec![b"x".to_vec(); 256]).is_ok());
    for bad in [&[][..], &[0][..], &[0, 2, b'a'][..], &[0, 1, b'a', 0][..]] {
        assert!(decode_entry_bundle(bad).is_err(), "accepted {bad:?}");
    }
    let too_many = vec![0u8; 2 * 257];
    assert!(decode_entry_bundle(&too_many).is_err());
}

/// Builds a log, serves its tiles from the store, and checks a client recomputes every root
/// and inclusion proof from them, fetching each tile at most once per reader.
#[test]
fn roots_and_proofs_from_served_tiles() {
    let size = 70_000u64;
    let tree = MemoryTree::from_entries((0..size).map(|i| format!("entry {i}"))).expect("fits");
    let served: BTreeMap<TileId, Vec<u8>> = tiles_for_growth(0, size)
        .into_iter()
        .map(|tile| (tile, read_tile(&tile, &tree).expect("stored")))
        .collect();
    let fetches = Cell::new(0usize);
    let fetch = |tile: &TileId| {
        fetches.set(fetches.get() + 1);
        served.get(tile).cloned().ok_or("not served")
    };
    assert_eq!(root_from_tiles(size, fetch), Ok(tree.root()));
    assert_eq!(fetches.get(), 3, "one level-0, one level-1, one level-2 partial tile");

    let reader = TileHashReader::new(size, fetch);
    for index in [0, 1, 255, 256, 65_535, 65_536, 69_887, 69_888, 69_999] {
        let proof = inclusion_proof(index, size, &reader).expect("tiles");
        let leaf = leaf_hash(format!("entry {index}").as_bytes());
        assert_eq!(verify_inclusion(&leaf, index, size, &proof, &tree.root()), Ok(()));
    }

    // Tiles for smaller checkpoints: the full tiles are shared, partial ones are per size.
    for smaller in [1u64, 255, 256, 257, 65_536, 65_537] {
        let partials: BTreeMap<TileId, Vec<u8>> = tiles_for_growth(0, smaller)
            .into_iter()
            .map(|tile| (tile, read_tile(&tile, &tree).expect("stored")))
            .collect();
        let fetch = |tile: &TileId| partials.get(tile).cloned().ok_or("not served");
        assert_eq!(
            root_from_tiles(smaller, fetch).ok(),
            tree_root(smaller, &tree).ok(),
            "size {smaller}"
        );
    }

    // Tampered and truncated tiles are caught.
    let tampered = |tile: &TileId| {
        let mut bytes = served.get(tile).cloned().ok_or("not served")?;
        if tile.level == 1 {
            bytes[40] ^= 1;
        }
        Ok::<_, &str>(bytes)
    };
    assert_ne!(root_from_tiles(size, tampered), Ok(tree.root()));
    let truncated = |tile: &TileId| {
        let mut bytes = served.get(tile).cloned().ok_or("not served")?;
        bytes.pop();
        Ok::<_, &str>(bytes)
    };
    assert!(matches!(
        root_from_tiles(size, truncated),
        Err(TreeError::Read(TileFetchError::WrongLength { .. }))
    ));
    let missing = |_: &TileId| Err::<Vec<u8>, _>("offline");
    assert!(matches!(
        root_from_tiles(size, missing),
        Err(TreeError::Read(TileFetchError::Fetch { .. }))
    ));
    assert_eq!(usize::from(TILE_WIDTH), 256);
}
