//! Sharded checkpoints: written per rank, read back onto another number of ranks.

use std::path::PathBuf;

use lvface_pfc::checkpoint::{load_shard, read_manifest, save_shard, write_manifest, ShardTensor};
use lvface_pfc::ClassShard;

const CLASSES: usize = 23;
const DIM: usize = 3;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lvface-pfc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Centres and lengths whose values encode their class, with bit patterns a float conversion
/// would change (subnormals, negative zero).
fn full() -> (Vec<f32>, Vec<f32>) {
    let centres = (0..CLASSES * DIM)
        .map(|i| match i % 5 {
            0 => f32::from_bits(1 + i as u32), // subnormal
            1 => -0.0,
            _ => (i as f32).sin() * 1e3,
        })
        .collect();
    let lengths = (0..CLASSES).map(|c| c as f32 / 7.0).collect();
    (centres, lengths)
}

fn save(dir: &std::path::Path, world: usize, centres: &[f32], lengths: &[f32]) {
    let mut names = Vec::new();
    for shard in ClassShard::all(world, CLASSES) {
        let r = shard.range();
        let tensors = vec![
            ShardTensor {
                name: "centres".into(),
                shape: vec![r.len(), DIM],
                values: centres[r.start * DIM..r.end * DIM].to_vec(),
            },
            ShardTensor {
                name: "lengths".into(),
                shape: vec![r.len()],
                values: lengths[r.clone()].to_vec(),
            },
        ];
        save_shard(dir, shard, &tensors).unwrap();
        names = tensors;
    }
    write_manifest(dir, CLASSES, world, &names).unwrap();
}

fn load(dir: &std::path::Path, world: usize) -> (Vec<f32>, Vec<f32>) {
    let mut centres = Vec::new();
    let mut lengths = Vec::new();
    for shard in ClassShard::all(world, CLASSES) {
        let tensors = load_shard(dir, shard).unwrap();
        assert_eq!(tensors[0].shape, [shard.num_local(), DIM]);
        centres.extend(&tensors[0].values);
        lengths.extend(&tensors[1].values);
    }
    (centres, lengths)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn four_shards_to_three_ranks_and_back_is_bit_exact() {
    let (centres, lengths) = full();
    let four = scratch("four");
    save(&four, 4, &centres, &lengths);
    let (c3, l3) = load(&four, 3);
    assert_eq!(bits(&c3), bits(&centres));
    let three = scratch("three");
    save(&three, 3, &c3, &l3);
    let (c4, l4) = load(&three, 4);
    assert_eq!(bits(&c4), bits(&centres));
    assert_eq!(bits(&l4), bits(&lengths));
    assert_eq!(read_manifest(&three).unwrap().world_size, 3);
    // Onto one rank and onto more ranks than shards.
    assert_eq!(bits(&load(&four, 1).0), bits(&centres));
    assert_eq!(bits(&load(&four, 7).1), bits(&lengths));
    for dir in [four, three] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn a_missing_shard_or_a_wrong_class_count_is_named() {
    let (centres, lengths) = full();
    let dir = scratch("broken");
    save(&dir, 2, &centres, &lengths);
    let err = load_shard(&dir, ClassShard::new(0, 2, CLASSES + 1)).unwrap_err();
    assert!(
        err.to_string().contains("23 classes, the classifier 24"),
        "{err}"
    );
    std::fs::remove_file(dir.join("shard-00001-of-00002.safetensors")).unwrap();
    let err = load_shard(&dir, ClassShard::new(0, 1, CLASSES)).unwrap_err();
    assert!(err.to_string().contains("shard-00001-of-00002"), "{err}");
    // A manifest is only written over complete shards.
    let err = write_manifest(&dir, CLASSES, 2, &[]).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_truncated_shard_is_an_error_not_garbage() {
    let (centres, lengths) = full();
    let dir = scratch("truncated");
    save(&dir, 2, &centres, &lengths);
    let file = dir.join("shard-00000-of-00002.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() - 9]).unwrap();
    let err = load_shard(&dir, ClassShard::new(0, 1, CLASSES)).unwrap_err();
    assert!(err.to_string().contains("shard-00000-of-00002"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}
