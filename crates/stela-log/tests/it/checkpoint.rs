//! Checkpoint format/parse round trip over random contents, and the C2SP example body.

use proptest::prelude::*;
use stela_log::Checkpoint;

/// The example of c2sp.org/tlog-checkpoint (its body; the signature is by a key not published).
#[test]
fn c2sp_example_body() {
    let text =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    let checkpoint = Checkpoint::parse(text).expect("spec example");
    assert_eq!(checkpoint.origin, "example.com/behind-the-sofa");
    assert_eq!(checkpoint.size, 20852163);
    assert_eq!(checkpoint.to_text().as_deref(), Ok(text));
}

proptest! {
    #[test]
    fn round_trip(
        origin in "[^\\p{Cc}]{1,40}",
        size in any::<u64>(),
        root in any::<[u8; 32]>(),
        extensions in proptest::collection::vec("[^\\p{Cc}]{1,20}", 0..3),
    ) {
        let checkpoint = Checkpoint { origin, size, root, extensions };
        let text = checkpoint.to_text().expect("valid fields");
        prop_assert_eq!(Checkpoint::parse(&text), Ok(checkpoint));
    }
}
