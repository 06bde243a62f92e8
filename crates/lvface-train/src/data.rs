//! `data`: lvface-data's tools on the command line (`cargo xtask data ...`). They live in this
//! binary because lvface-data depends on burn and xtask must not; the release build that
//! `cargo xtask train` and `eval` already make serves them too. stdout gets one
//! machine-readable line (`key=value` pairs) and nothing else.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::builder::RangedU64ValueParser;
use lvface_data::{
    decode_rgb, pack_folder, BinPairs, FaceSource, ImageCodec, RecordDataset, SyntheticConfig,
    SyntheticFaces,
};

/// The file name of the synthetic verification pairs, as in a run's `data/` folder.
pub const SYNTHETIC_PAIRS: &str = "synthetic_pairs.bin";

/// The file name of the same pairs with a face mask on the second image of each pair
/// (insightface's masked-face protocol), written next to [`SYNTHETIC_PAIRS`].
pub const SYNTHETIC_MASKED_PAIRS: &str = "synthetic_masked_pairs.bin";

/// Subcommands of `data`.
#[derive(clap::Subcommand)]
pub enum Command {
    /// A RecordIO folder or .rec file: `images=N identities=C size=HxW`; a .bin pair set:
    /// `pairs=N same=S`.
    Inspect {
        /// A folder holding train.rec (and train.idx, property), a .rec file, or a .bin file.
        path: PathBuf,
    },
    /// Pack an image folder (one sub-folder per identity) into OUT_DIR/train.rec, train.idx,
    /// property and labels.tsv, checking that every image decodes.
    Pack {
        /// One sub-folder per identity, .jpg/.jpeg/.png images in each.
        folder: PathBuf,
        /// A new or empty folder.
        out_dir: PathBuf,
    },
    /// Render synthetic identities into OUT_DIR (RecordIO, or one folder per identity under
    /// OUT_DIR/images) and verification pairs of held-out identities (OUT_DIR/synthetic_pairs.bin,
    /// and the same pairs with a masked second image in OUT_DIR/synthetic_masked_pairs.bin).
    Synth(SynthArgs),
}

/// Arguments of `data synth`; the defaults are lvface-data's `SyntheticConfig`.
#[derive(clap::Args)]
pub struct SynthArgs {
    /// A new or empty folder.
    out_dir: PathBuf,
    /// Training identities.
    #[arg(long, default_value_t = 100,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..(1 << 24)))]
    ids: usize,
    /// Images per training identity.
    #[arg(long, default_value_t = 20,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    per_id: usize,
    /// Further identities, never in the training set, that the verification pairs show.
    #[arg(long, default_value_t = 20)]
    held_out: usize,
    /// Verification pairs (even pairs same identity, odd pairs different), written plain and
    /// with the second image masked; 0 writes no .bin.
    #[arg(long, default_value_t = 200)]
    pairs: usize,
    /// Seed of everything.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of the square images.
    #[arg(long, default_value_t = 112)]
    size: u32,
    /// Strength of per-image nuisance (0: one fixed image per identity).
    #[arg(long, default_value_t = 1.0)]
    nuisance: f32,
    /// rec (train.rec, train.idx, property) or folders (`OUT_DIR/images/<identity>/<n>.jpg`).
    #[arg(long, default_value = "rec", value_parser = ["rec", "folders"])]
    format: String,
    /// Store PNG instead of JPEG.
    #[arg(long)]
    png: bool,
}

/// Runs `data`.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Inspect { path } => println!("{}", inspect(&path)?),
        Command::Pack { folder, out_dir } => {
            fresh_folder(&out_dir)?;
            let summary = pack_folder(&folder, &out_dir).with_context(|| {
                format!("packing {} into {}", folder.display(), out_dir.display())
            })?;
            println!(
                "images={} identities={} size={}x{} other_sizes={} repeated={}",
                summary.images,
                summary.identities,
                summary.size.0,
                summary.size.1,
                summary.other_sizes,
                summary.repeated
            );
        }
        Command::Synth(args) => println!("{}", synth(&args)?),
    }
    Ok(())
}

/// The machine-readable line of `data inspect`.
fn inspect(path: &Path) -> Result<String> {
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("bin"))
    {
        let pairs = BinPairs::read(path).with_context(|| format!("reading {}", path.display()))?;
        return Ok(format!("pairs={} same={}", pairs.len(), pairs.same_count()));
    }
    let dataset =
        RecordDataset::open(path).with_context(|| format!("opening {}", path.display()))?;
    let identities = match dataset.num_classes() {
        Some(classes) => classes,
        None => dataset
            .scan_labels()?
            .into_iter()
            .max()
            .map_or(0, |m| m + 1),
    };
    let (height, width) = match dataset.property() {
        Some(p) => (p.height, p.width),
        None if dataset.is_empty() => (0, 0),
        None => {
            let face = dataset.encoded(0)?;
            let image = decode_rgb(&face.bytes, &face.origin)?;
            (image.height(), image.width())
        }
    };
    Ok(format!(
        "images={} identities={identities} size={height}x{width}",
        dataset.len()
    ))
}

/// Renders the synthetic set of `args` and returns its machine-readable line.
fn synth(args: &SynthArgs) -> Result<String> {
    let config = SyntheticConfig {
        identities: args.ids,
        images_per_identity: args.per_id,
        held_out_identities: args.held_out,
        pairs: args.pairs,
        seed: args.seed,
        size: args.size,
        nuisance: args.nuisance,
        codec: if args.png {
            ImageCodec::Png
        } else {
            ImageCodec::Jpeg
        },
        ..SyntheticConfig::default()
    };
    let faces = SyntheticFaces::new(config).context("data synth")?;
    let out = &args.out_dir;
    fresh_folder(out)?;
    if args.format == "rec" {
        faces.write_rec(out)?;
    } else {
        faces.write_folders(&out.join("images"))?;
    }
    let mut line = format!(
        "images={} identities={} size={}x{}",
        args.ids * args.per_id,
        args.ids,
        args.size,
        args.size
    );
    if args.pairs > 0 {
        let pairs = faces.verification_pairs()?;
        pairs.write(&out.join(SYNTHETIC_PAIRS))?;
        faces.write_masked_bin(&out.join(SYNTHETIC_MASKED_PAIRS))?;
        line.push_str(&format!(
            " pairs={} same={}",
            pairs.len(),
            pairs.same_count()
        ));
    }
    Ok(line)
}

/// Creates `dir`, refusing one that holds anything: packing or rendering over an existing set
/// would mix two sets.
fn fresh_folder(dir: &Path) -> Result<()> {
    if dir.exists() {
        let mut entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!("{} is not empty; give a new folder", dir.display());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
