//! [`find`] and [`plan`] on made-up machines: folders laid out as NVIDIA's pip wheels lay them
//! out (read in nvidia-cuda-nvrtc, -runtime, -crt, -cccl 13.2.86 and nvidia-nccl-cu13 2.30.7).

use super::*;

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lvface-cuda-env-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
}

/// `site-packages/nvidia` as `pip install torch` (CUDA 13) leaves it, plus the crt and cccl
/// wheels when `headers` is true.
fn pip_tree(root: &Path, headers: bool) -> PathBuf {
    let nvidia = root.join("site-packages/nvidia");
    touch(&nvidia.join("cu13/lib/libnvrtc.so.13"));
    touch(&nvidia.join("cu13/lib/libnvrtc-builtins.so.13.2"));
    touch(&nvidia.join("nccl/lib/libnccl.so.2"));
    for header in ["cuda_runtime.h", "cuda_fp16.h", "cuda_bf16.h", "mma.h"] {
        touch(&nvidia.join("cu13/include").join(header));
    }
    if headers {
        touch(&nvidia.join("cu13/include/crt/host_config.h"));
        touch(&nvidia.join("cu13/include/cccl/cuda/pipeline"));
    }
    nvidia
}

fn driver_only(name: &str) -> bool {
    name == "libcuda.so.1"
}

#[test]
fn cudarc_never_tries_the_name_of_the_nccl_pip_wheel() {
    let names = candidate_names("nccl");
    assert_eq!(names[0], "libnccl.so");
    assert!(names.contains(&"libnccl.so.13".to_string()));
    assert!(!names.contains(&"libnccl.so.2".to_string()));
}

#[test]
fn a_pytorch_install_is_turned_into_library_folders_a_link_and_cuda_path() {
    let root = scratch("pip");
    let nvidia = pip_tree(&root, true);
    let machine = Machine {
        can_load: &driver_only,
        cuda_path: None,
        nvidia_dirs: vec![root.join("elsewhere/nvidia"), nvidia.clone()],
        system_cuda: vec![root.join("usr/local/cuda")],
    };
    let findings = find(&machine);
    assert_eq!(findings.driver, Library::Loadable("libcuda.so.1".into()));
    assert_eq!(
        findings.nvrtc,
        Library::InFolder {
            dir: nvidia.join("cu13/lib"),
            file: "libnvrtc.so.13".into(),
            link: None
        }
    );
    assert_eq!(findings.cuda_path, Ok(nvidia.join("cu13")));
    assert!(findings.cccl);
    let plan = plan(&findings, false, true).unwrap();
    assert_eq!(plan.library_dirs, [nvidia.join("cu13/lib")]);
    assert_eq!(
        plan.links,
        [(
            "libnccl.so".to_string(),
            nvidia.join("nccl/lib/libnccl.so.2")
        )]
    );
    assert_eq!(plan.cuda_path, Some(nvidia.join("cu13")));

    let (lines, ready) = describe(&findings);
    assert!(ready);
    assert_eq!(lines[0], "driver  libcuda.so.1 (on the loader's path)");
    assert!(
        lines[3]
            .ends_with("libnccl.so.2 (linked as libnccl.so in a folder put on LD_LIBRARY_PATH)"),
        "{lines:?}"
    );
    assert_eq!(lines[4], "ready");
}

#[test]
fn a_system_toolkit_comes_before_pip_and_loadable_libraries_need_nothing() {
    let root = scratch("system");
    let nvidia = pip_tree(&root, true);
    let system = root.join("usr/local/cuda");
    for header in HEADERS {
        touch(&system.join(header));
    }
    let machine = Machine {
        can_load: &|name| ["libcuda.so.1", "libnvrtc.so.13", "libnccl.so"].contains(&name),
        cuda_path: None,
        nvidia_dirs: vec![nvidia],
        system_cuda: vec![system.clone()],
    };
    let findings = find(&machine);
    assert_eq!(findings.nccl, Library::Loadable("libnccl.so".into()));
    assert!(!findings.cccl);
    let plan = plan(&findings, false, true).unwrap();
    assert!(plan.library_dirs.is_empty() && plan.links.is_empty());
    assert_eq!(plan.cuda_path, Some(system));
}

#[test]
fn headers_without_crt_name_the_file_and_the_wheel_that_has_it() {
    let root = scratch("no-crt");
    let nvidia = pip_tree(&root, false);
    let machine = Machine {
        can_load: &driver_only,
        cuda_path: None,
        nvidia_dirs: vec![nvidia.clone()],
        system_cuda: Vec::new(),
    };
    let error = plan(&find(&machine), false, false).unwrap_err();
    assert!(
        error.contains(&format!(
            "{} has no include/crt/host_config.h",
            nvidia.join("cu13").display()
        )) && error.contains("nvidia-cuda-crt==13.*"),
        "{error}"
    );

    // A CUDA_PATH the user set is checked and kept, not replaced by the pip folder.
    let machine = Machine {
        cuda_path: Some(nvidia.join("cu13")),
        ..machine
    };
    let findings = find(&machine);
    let error = findings.cuda_path.clone().unwrap_err();
    assert!(
        error.starts_with("CUDA_PATH is ") && error.contains("host_config.h"),
        "{error}"
    );
}

#[test]
fn a_bare_machine_lists_every_problem_and_nccl_only_when_it_is_needed() {
    let root = scratch("bare");
    let machine = Machine {
        can_load: &|_| false,
        cuda_path: None,
        nvidia_dirs: Vec::new(),
        system_cuda: vec![root.join("usr/local/cuda")],
    };
    let findings = find(&machine);
    let one_gpu = plan(&findings, false, false).unwrap_err();
    let lines: Vec<&str> = one_gpu.lines().collect();
    assert_eq!(lines.len(), 3, "{one_gpu}");
    assert!(lines[0].contains("libcuda.so.1"), "{one_gpu}");
    assert!(lines[1].contains("nvidia-cuda-nvrtc==13.*"), "{one_gpu}");
    assert!(lines[2].contains("no CUDA headers"), "{one_gpu}");
    let several = plan(&findings, false, true).unwrap_err();
    assert!(
        several.contains("pip install nvidia-nccl-cu13"),
        "{several}"
    );
    let (lines, ready) = describe(&findings);
    assert!(!ready);
    assert_eq!(lines.last().unwrap(), "not ready");
}

#[test]
fn a_python_without_nvidia_packages_gives_no_folders() {
    assert!(pip_nvidia_dirs("/nonexistent/python3").is_empty());
}
