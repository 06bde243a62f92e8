//! The bundle's contents and size limit, and `run.sh --dry-run` end to end around a stand-in
//! `lvface` (the real binary's steps are the binary's own tests; here the script's plumbing).

use std::ffi::OsString;

use super::*;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lvface-gpu-check-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// A stand-in for `lvface` that prints each command's measuring line.
fn fake_binary(dir: &Path) -> PathBuf {
    let path = dir.join("fake-lvface");
    write_executable(
        &path,
        "#!/bin/sh\ncase \"$1\" in\n\
         parity) echo \"parity backend=Cpu max_abs_diff=8.6e-7 relative_l2=5.4e-7 tolerance=1e-4 pass\" ;;\n\
         probe) echo \"bench=vit_t/train_step_pfc batch=2 images_per_s=3.5\" ;;\n\
         cuda-env) [ \"$2\" = --all-reduce ] && echo \"nccl ranks=1 elements=$3 max_abs_diff=0e0 ms=0.1 gb_per_s=0.1 pass\" && exit 0; echo \"not ready\"; exit 1 ;;\n\
         *) echo \"ran $*\" ;;\n\
         esac\n",
    )
    .unwrap();
    path
}

/// `run.sh --dry-run` in `bundle` with a time budget of `budget` seconds: its results.json.
fn dry_run(bundle: &Path, budget: &str) -> serde_json::Value {
    let status = Command::new("bash")
        .arg(bundle.join("run.sh"))
        .arg("--dry-run")
        .env("BUDGET", budget)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    serde_json::from_str(&std::fs::read_to_string(bundle.join("results/results.json")).unwrap())
        .unwrap()
}

#[test]
fn the_command_line_is_parsed_and_wrong_ones_refused() {
    let args: Vec<OsString> = ["--bundle", "b", "--dry-run", "--cuda-headers", "h"]
        .iter()
        .map(OsString::from)
        .collect();
    let options = parse(&args).unwrap();
    assert_eq!(
        options,
        Options {
            bundle: "b".into(),
            dry_run: true,
            binary: None,
            cuda_headers: Some("h".into()),
        }
    );
    assert!(parse(&[]).unwrap_err().to_string().contains("--bundle DIR"));
    let unknown = parse(&[OsString::from("--bundel")])
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("unknown argument \"--bundel\""),
        "{unknown}"
    );
}

#[test]
fn a_bundle_above_the_limit_is_refused_naming_its_size() {
    let dir = scratch("big");
    let binary = dir.join("huge");
    // Sparse: its length counts, its blocks are never written.
    std::fs::File::create(&binary)
        .unwrap()
        .set_len(MAX_BUNDLE_BYTES + 1)
        .unwrap();
    let error = write_bundle(&dir.join("bundle"), root(), &binary, None)
        .unwrap_err()
        .to_string();
    assert!(error.contains("above the 64 MiB"), "{error}");
}

#[test]
fn the_dry_run_writes_every_step_into_results_json() {
    let dir = scratch("dry");
    let bundle = dir.join("bundle");
    let size = write_bundle(&bundle, root(), &fake_binary(&dir), None).unwrap();
    assert!(size < MAX_BUNDLE_BYTES);
    for file in [
        "lvface",
        "run.sh",
        "results.py",
        "configs/smoke.toml",
        "fixtures/vit-parity/weights.safetensors",
        "fixtures/vit-parity/io.safetensors",
        "reference/train_step_torch.py",
        "reference/vit_torch.py",
    ] {
        assert!(bundle.join(file).is_file(), "{file} is missing");
    }
    let results = dry_run(&bundle, "480");
    assert_eq!(results["dry_run"], true);
    let steps: Vec<&str> = results["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "cuda_env",
            "parity_f32",
            "smoke_f32",
            "step_vit_t_lvface",
            "step_vit_t_torch",
            "parity_bf16",
            "smoke_bf16",
            "nccl_one_rank",
            "devices_1"
        ]
    );
    let step = |name: &str| {
        results["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == name)
            .unwrap()
            .clone()
    };
    // A failing step is recorded with its exit code and the end of its log, and the run goes on.
    assert_eq!(step("cuda_env")["rc"], 1);
    assert_eq!(step("cuda_env")["tail"][0], "not ready");
    assert_eq!(step("parity_f32")["measured"][0]["relative_l2"], 5.4e-7);
    assert_eq!(
        step("step_vit_t_lvface")["measured"][0]["images_per_s"],
        3.5
    );
    assert_eq!(step("nccl_one_rank")["measured"][0]["elements"], 1024.0);
    assert_eq!(results["passed"], false);

    // With the time budget spent, every step is skipped and recorded as such.
    let results = dry_run(&bundle, "0");
    let skipped = results["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["skipped"] == true && s["rc"] == -1)
        .count();
    assert_eq!(skipped, 9);
}
