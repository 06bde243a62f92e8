//! What several test files share.

/// `--set` keys that grow the smoke config to 48 identities of 12 images and 300 pairs of 24
/// held-out ones: large enough for accuracy to be measured to a third of a percent (one pair)
/// and for the model to generalise to identities it never saw, small enough for seconds.
pub const LEARNING_SIZE: [&str; 6] = [
    "data.synthetic.identities=48",
    "data.synthetic.images_per_identity=12",
    "data.synthetic.held_out_identities=24",
    "data.synthetic.pairs=300",
    "data.batch_size=32",
    "eval.batch_size=100",
];
