//! The bad-input contract of the three CLIs (DESIGN.md "Exit codes and errors") held against
//! hostile input, every file crafted here at test time: exit 2, exactly one line on stderr
//! naming the file, key, tensor or flag, no panic or backtrace, no hang, nothing partial
//! left, an existing output intact, and memory bounded: every case runs under a 4 GiB
//! address-space limit (setrlimit), so a size bomb fails the case instead of the machine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ddpm_exporter::onnx::model::value_info as vi;
use ddpm_exporter::onnx::proto::{
    tensor_proto::DataType, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto,
    ValueInfoProto,
};
use ddpm_exporter::onnx::{attr_int, attr_ints, float_tensor, int64_tensor as ints};
use ddpm_io::npy::write_npy;
use prost::Message;

const ADDRESS_SPACE: u64 = 4 << 30;
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// The three binaries sit next to this test's folder (cargo builds them for their own
/// packages' integration tests in `cargo test --workspace`).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join(name);
    assert!(p.is_file(), "{} is not built: run the workspace's tests (make test)", p.display());
    p
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
}

/// Runs a CLI under the address-space limit, with a time limit (a hang fails the case).
fn run(tool: &str, args: &[String], env: &[(&str, String)]) -> Outcome {
    let mut cmd = Command::new(bin(tool));
    cmd.args(args).env("RUST_LOG", "warn").env_remove("RUST_BACKTRACE").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: ADDRESS_SPACE, rlim_max: ADDRESS_SPACE };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        use std::io::Read;
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if t0.elapsed() > CASE_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap();
    match status {
        Some(s) => Outcome { code: s.code(), stderr },
        None => Outcome { code: None, stderr: format!("HANG: no exit after {CASE_TIMEOUT:?}; {stderr}") },
    }
}

/// One hostile case: the tool, its arguments, the word the one line must contain, and
/// files that must come out of it byte-identical (or still absent).
struct Case {
    tool: &'static str,
    args: Vec<String>,
    needle: String,
    env: Vec<(&'static str, String)>,
    keep: Vec<PathBuf>,
}

fn case(tool: &'static str, args: &[&str], needle: &str) -> Case {
    Case { tool, args: args.iter().map(|s| s.to_string()).collect(), needle: needle.into(), env: vec![], keep: vec![] }
}

impl Case {
    fn keep(mut self, p: &Path) -> Self {
        self.keep.push(p.to_path_buf());
        self
    }
}

fn snapshot(p: &Path) -> Option<Vec<u8>> {
    if p.is_dir() {
        // A folder: its listing and every file's bytes.
        let mut all = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let path = e.path();
                if path.symlink_metadata().unwrap().is_dir() {
                    stack.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.sort();
        for f in files {
            all.extend(f.to_string_lossy().as_bytes());
            all.extend(std::fs::read(&f).unwrap_or_default());
        }
        Some(all)
    } else {
        std::fs::read(p).ok()
    }
}

/// Runs every case (on two threads) and reports all failures at once.
fn check_all(cases: Vec<Case>) -> usize {
    let n = cases.len();
    let cases = std::sync::Mutex::new(cases.into_iter().enumerate().collect::<Vec<_>>());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let Some((i, c)) = cases.lock().unwrap().pop() else { break };
                let before: Vec<Option<Vec<u8>>> = c.keep.iter().map(|p| snapshot(p)).collect();
                let out = run(c.tool, &c.args, &c.env);
                let lines: Vec<&str> = out.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
                let mut problems = Vec::new();
                if out.code != Some(2) {
                    problems.push(format!("exit {:?}, expected 2", out.code));
                }
                if lines.len() != 1 {
                    problems.push(format!("{} lines on stderr, expected 1", lines.len()));
                }
                if !out.stderr.contains(&c.needle) {
                    problems.push(format!("stderr does not name {:?}", c.needle));
                }
                if out.stderr.contains("panicked") || out.stderr.contains("backtrace") || out.stderr.contains("RUST_BACKTRACE") {
                    problems.push("a panic".into());
                }
                for (p, b) in c.keep.iter().zip(&before) {
                    if &snapshot(p) != b {
                        problems.push(format!("{} changed", p.display()));
                    }
                }
                if !problems.is_empty() {
                    failures.lock().unwrap().push(format!(
                        "case {i}: {} {:?}: {}\n    stderr: {}",
                        c.tool,
                        c.args,
                        problems.join("; "),
                        out.stderr.trim()
                    ));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} of {n} hostile cases broke the contract:\n{}", failures.len(), failures.join("\n"));
    n
}

// ---------------------------------------------------------------- crafted ONNX models

fn dims(d: &[i64]) -> Vec<Option<usize>> {
    d.iter().map(|&v| usize::try_from(v).ok()).collect()
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: Some(op.into()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

fn floats(name: &str, shape: &[usize], data: &[f32]) -> TensorProto {
    float_tensor(name, shape, data, false)
}

struct Graph {
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<ValueInfoProto>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    meta: Vec<(&'static str, String)>,
}

fn write_model(path: &Path, g: Graph) -> String {
    let model = ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
        producer_name: Some("hostile test".into()),
        graph: Some(GraphProto {
            name: Some("g".into()),
            node: g.nodes,
            initializer: g.inits,
            input: g.inputs,
            output: g.outputs,
            ..Default::default()
        }),
        metadata_props: g.meta.into_iter().map(|(k, v)| StringStringEntryProto { key: Some(k.into()), value: Some(v) }).collect(),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).unwrap();
    path.to_string_lossy().into_owned()
}

const SCHED: &str =
    r#"{"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear", "clip_sample": false}"#;

/// sample [batch, 1, 8, 8] -> noise_pred = sample * 0.1 (a valid model), with this metadata.
fn denoiser(path: &Path, sample: &[i64], meta: Vec<(&'static str, String)>) -> String {
    write_model(
        path,
        Graph {
            inputs: vec![vi("sample", DataType::Float, &dims(sample)), vi("timestep", DataType::Int64, &[None])],
            outputs: vec![vi("noise_pred", DataType::Float, &dims(sample))],
            nodes: vec![node("Mul", &["sample", "k"], &["noise_pred"], vec![])],
            inits: vec![floats("k", &[], &[0.1])],
            meta,
        },
    )
}

fn sched_meta(text: &str) -> Vec<(&'static str, String)> {
    vec![("scheduler_config", text.to_string()), ("unet_config", r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1}"#.into())]
}

// ---------------------------------------------------------------- data

fn idx_bytes(n: u32, h: u32, w: u32, body: usize) -> Vec<u8> {
    let mut b = vec![0u8, 0, 8, 3];
    for d in [n, h, w] {
        b.extend(d.to_be_bytes());
    }
    b.extend(std::iter::repeat_n(7u8, body));
    b
}

fn write_idx_pair(dir: &Path, n: usize) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut imgs = idx_bytes(n as u32, 8, 8, 0);
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    for i in 0..n {
        for p in 0..64 {
            imgs.push(((i * 31 + p * 7) % 256) as u8);
        }
        labels.push((i % 2) as u8);
    }
    let path = dir.join("train-images-idx3-ubyte");
    std::fs::write(&path, imgs).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), labels).unwrap();
    path
}

fn mkfifo(path: &Path) -> String {
    let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: a plain libc call on a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    path.to_string_lossy().into_owned()
}

const TINY: &str = r#"{"sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [16, 32],
  "layers_per_block": 1, "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
  "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8, "attention_head_dim": 16,
  "num_class_embeds": 2, "dropout": 0.1}"#;

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

/// A config.json with one key changed (or added).
fn tiny_with(dir: &Path, name: &str, key: &str, value: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(TINY).unwrap();
    v[key] = serde_json::from_str(value).unwrap();
    let p = dir.join(format!("{name}.json"));
    std::fs::write(&p, v.to_string()).unwrap();
    s(&p)
}

// ---------------------------------------------------------------- the cases

#[test]
fn runtime_sample_and_eval_hold_the_contract_against_hostile_input() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let good = denoiser(&dir.join("good.onnx"), &[-1, 1, 8, 8], sched_meta(SCHED));
    // An existing output that every failed run must leave alone, and an absent one that
    // must stay absent.
    let existing = dir.join("existing.npy");
    write_npy(&existing, &[0.25; 64], &[1, 1, 8, 8]).unwrap();
    let out = s(&dir.join("new.npy"));
    let ex = s(&existing);
    let sample = |extra: &[&str], needle: &str| {
        let mut args = vec!["sample", "--no-model-cache"];
        if !extra.contains(&"--threads") {
            args.extend(["--threads", "1"]);
        }
        args.extend_from_slice(extra);
        case("runtime", &args, needle)
    };
    let mut cases = Vec::new();
    // (model, extra flags, needle), each run twice: to a new output and over an existing one.
    let mut specs: Vec<(String, Vec<String>, String)> = Vec::new();
    let mut with_model = |model: &str, extra: &[&str], needle: &str| {
        specs.push((model.to_string(), extra.iter().map(|e| e.to_string()).collect(), needle.to_string()));
    };

    // Model files that are not models.
    let empty = s(&dir.join("empty.onnx"));
    std::fs::write(&empty, b"").unwrap();
    with_model(&empty, &[], "empty.onnx");
    let garbage = s(&dir.join("garbage.onnx"));
    std::fs::write(&garbage, b"\x08\x07garbage that is not protobuf").unwrap();
    with_model(&garbage, &[], "garbage.onnx");
    let truncated = s(&dir.join("truncated.onnx"));
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 7]).unwrap();
    with_model(&truncated, &[], "truncated.onnx");
    with_model(&s(dir), &[], "folder");
    let fifo = mkfifo(&dir.join("fifo.onnx"));
    with_model(&fifo, &[], "fifo.onnx");
    with_model("/dev/zero", &[], "/dev/zero");
    with_model("/dev/null", &[], "/dev/null");
    with_model(&s(&dir.join("missing.onnx")), &[], "missing.onnx");

    // Models that declare what nobody should allocate, or lie.
    let huge = denoiser(&dir.join("huge.onnx"), &[1, 3, 100_000, 100_000], sched_meta(SCHED));
    with_model(&huge, &[], "huge.onnx");
    let huge_c = denoiser(&dir.join("huge_c.onnx"), &[-1, 1_000_000_000, 8, 8], sched_meta(SCHED));
    with_model(&huge_c, &[], "huge_c.onnx");
    let rank3 = write_model(
        &dir.join("rank3.onnx"),
        Graph {
            inputs: vec![vi("sample", DataType::Float, &dims(&[-1, 8, 8])), vi("timestep", DataType::Int64, &[None])],
            outputs: vec![vi("noise_pred", DataType::Float, &dims(&[-1, 8, 8]))],
            nodes: vec![node("Identity", &["sample"], &["noise_pred"], vec![])],
            inits: vec![],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&rank3, &[], "rank3.onnx");
    let int_sample = write_model(
        &dir.join("int_sample.onnx"),
        Graph {
            inputs: vec![vi("sample", DataType::Int64, &dims(&[-1, 1, 8, 8])), vi("timestep", DataType::Int64, &[None])],
            outputs: vec![vi("noise_pred", DataType::Int64, &dims(&[-1, 1, 8, 8]))],
            nodes: vec![node("Identity", &["sample"], &["noise_pred"], vec![])],
            inits: vec![],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&int_sample, &[], "int_sample.onnx");
    let no_t = write_model(
        &dir.join("no_timestep.onnx"),
        Graph {
            inputs: vec![vi("sample", DataType::Float, &dims(&[-1, 1, 8, 8]))],
            outputs: vec![vi("noise_pred", DataType::Float, &dims(&[-1, 1, 8, 8]))],
            nodes: vec![node("Identity", &["sample"], &["noise_pred"], vec![])],
            inits: vec![],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&no_t, &[], "timestep");
    let extra_input = write_model(
        &dir.join("extra_input.onnx"),
        Graph {
            inputs: vec![
                vi("sample", DataType::Float, &dims(&[-1, 1, 8, 8])),
                vi("timestep", DataType::Int64, &[None]),
                vi("guidance", DataType::Float, &[None]),
            ],
            outputs: vec![vi("noise_pred", DataType::Float, &dims(&[-1, 1, 8, 8]))],
            nodes: vec![node("Identity", &["sample"], &["noise_pred"], vec![])],
            inits: vec![],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&extra_input, &[], "guidance");
    // The output says [B, 1, 8, 8] and is [B, 1, 4, 4].
    let lying = write_model(
        &dir.join("lying.onnx"),
        Graph {
            inputs: vec![vi("sample", DataType::Float, &dims(&[-1, 1, 8, 8])), vi("timestep", DataType::Int64, &[None])],
            outputs: vec![vi("noise_pred", DataType::Float, &dims(&[-1, 1, 8, 8]))],
            nodes: vec![node(
                "AveragePool",
                &["sample"],
                &["noise_pred"],
                vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])],
            )],
            inits: vec![],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&lying, &[], "lying.onnx");
    // A table of 10 entries indexed by timesteps up to 999.
    let gather = write_model(
        &dir.join("gather.onnx"),
        Graph {
            inputs: vec![vi("sample", DataType::Float, &dims(&[-1, 1, 8, 8])), vi("timestep", DataType::Int64, &[None])],
            outputs: vec![vi("noise_pred", DataType::Float, &dims(&[-1, 1, 8, 8]))],
            nodes: vec![
                node("Gather", &["table", "timestep"], &["g"], vec![attr_int("axis", 0)]),
                node("Reshape", &["g", "shape"], &["g4"], vec![]),
                node("Mul", &["sample", "g4"], &["noise_pred"], vec![]),
            ],
            inits: vec![floats("table", &[10], &[0.1; 10]), ints("shape", &[4], &[-1, 1, 1, 1])],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&gather, &[], "gather.onnx");
    let wrong_out_type = write_model(
        &dir.join("int_output.onnx"),
        Graph {
            inputs: vec![vi("sample", DataType::Float, &dims(&[-1, 1, 8, 8])), vi("timestep", DataType::Int64, &[None])],
            outputs: vec![vi("noise_pred", DataType::Int64, &dims(&[-1, 1, 8, 8]))],
            nodes: vec![node("Cast", &["sample"], &["noise_pred"], vec![attr_int("to", DataType::Int64 as i64)])],
            inits: vec![],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&wrong_out_type, &[], "int_output.onnx");
    let nan_model = write_model(
        &dir.join("nan_output.onnx"),
        Graph {
            inputs: vec![vi("sample", DataType::Float, &dims(&[-1, 1, 8, 8])), vi("timestep", DataType::Int64, &[None])],
            outputs: vec![vi("noise_pred", DataType::Float, &dims(&[-1, 1, 8, 8]))],
            nodes: vec![node("Mul", &["sample", "k"], &["noise_pred"], vec![])],
            inits: vec![floats("k", &[], &[f32::NAN])],
            meta: sched_meta(SCHED),
        },
    );
    with_model(&nan_model, &[], "NaN");

    // Metadata: the scheduler config the model carries, checked like any config file.
    for (name, text, needle) in [
        ("bad_json", "{not json".to_string(), "scheduler_config"),
        ("unknown_key", r#"{"num_train_timesteps": 1000, "betta": 1}"#.to_string(), "betta"),
        ("t_zero", r#"{"num_train_timesteps": 0}"#.to_string(), "num_train_timesteps"),
        ("t_huge", r#"{"num_train_timesteps": 1000000000}"#.to_string(), "num_train_timesteps"),
        ("beta_end", r#"{"beta_end": 2.0}"#.to_string(), "beta_end"),
        ("beta_start_neg", r#"{"beta_start": -0.1}"#.to_string(), "beta_start"),
        ("clip_range", r#"{"clip_sample": true, "clip_sample_range": -1}"#.to_string(), "clip_sample_range"),
        ("clip_range_nan", r#"{"clip_sample_range": NaN}"#.to_string(), "clip_sample_range"),
        ("trained_betas", r#"{"num_train_timesteps": 2, "trained_betas": [0.5, 1.5]}"#.to_string(), "trained_betas"),
        ("threshold_ratio", r#"{"thresholding": true, "dynamic_thresholding_ratio": 7}"#.to_string(), "dynamic_thresholding_ratio"),
        ("steps_offset", r#"{"steps_offset": 5000}"#.to_string(), "steps_offset"),
        ("wrong_type", r#"{"num_train_timesteps": "many"}"#.to_string(), "num_train_timesteps"),
        ("not_object", "[1, 2, 3]".to_string(), "scheduler_config"),
    ] {
        let m = denoiser(&dir.join(format!("meta_{name}.onnx")), &[-1, 1, 8, 8], sched_meta(&text));
        with_model(&m, &[], needle);
    }
    let bad_unet_meta =
        denoiser(&dir.join("unet_meta.onnx"), &[-1, 1, 8, 8], vec![("scheduler_config", SCHED.into()), ("unet_config", "{oops".into())]);
    with_model(&bad_unet_meta, &[], "unet_config");

    // Flags.
    for (extra, needle) in [
        (vec!["--n", "1000000000000"], "1000000000000 samples"),
        (vec!["--n", "100000000", "--batch-size", "100000000"], "100000000 samples"),
        (vec!["--batch-size", "1000000000"], "--batch-size 1000000000"),
        (vec!["--n", "0"], "--n"),
        (vec!["--batch-size", "0"], "batch size"),
        (vec!["--threads", "100000"], "--threads 100000"),
        (vec!["--threads", "0"], "--threads 0"),
        (vec!["--steps", "0"], "steps"),
        (vec!["--steps", "1000000000"], "steps"),
        (vec!["--eta", "NaN"], "--eta"),
        (vec!["--eta", "inf"], "--eta"),
        (vec!["--eta", "-1"], "eta"),
        (vec!["--eta", "2"], "--eta 2: expected a number in [0, 1]"),
        (vec!["--seed", "-1"], "--seed"),
        (vec!["--class-label", "1"], "not class-conditional"),
        (vec!["--sampler", "euler"], "euler"),
        (vec!["--ep", "warp-drive"], "warp-drive"),
        (vec!["--precision", "fp16"], "fp16"),
        (vec!["--precision", "int4"], "int4"),
        (vec!["--timestep-spacing", "random"], "random"),
        (vec!["--max-memory", "lots"], "lots"),
        (vec!["--max-memory", "1K"], "limit"),
        (vec!["--trajectory", "traj.gif"], "traj.gif"),
        (vec!["--no-such-flag"], "--no-such-flag"),
    ] {
        with_model(&good, &extra, needle);
    }
    // A trajectory path that is a folder: refused before the chain, not after it.
    let folder = s(dir);
    with_model(&good, &["--trajectory", &folder], "--trajectory");
    // Outputs that cannot be written.
    for (o, needle) in [("samples.txt", "samples.txt"), ("no/such/dir/s.png", "no/such/dir")] {
        let o = s(&dir.join(o));
        cases.push(sample(&["--model", &good, "--steps", "2", "--out", &o], needle).keep(&existing));
    }
    // --noise files.
    let noise = |name: &str, data: &[f32], shape: &[usize]| {
        let p = dir.join(name);
        write_npy(&p, data, shape).unwrap();
        s(&p)
    };
    let nan = noise("nan.npy", &[f32::NAN; 64], &[1, 1, 8, 8]);
    let inf = noise("inf.npy", &[f32::INFINITY; 64], &[1, 1, 8, 8]);
    let wrong = noise("wrong.npy", &[0.0; 3 * 64], &[1, 3, 8, 8]);
    let rank2 = noise("rank2.npy", &[0.0; 64], &[8, 8]);
    let empty_n = noise("empty_n.npy", &[], &[0, 1, 8, 8]);
    // A header that declares 10^12 values over a few bytes of data.
    let liar = s(&dir.join("liar.npy"));
    {
        let mut header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1, 1000, 1000), }".to_string();
        while !(10 + header.len() + 1).is_multiple_of(64) {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 256]);
        std::fs::write(&liar, bytes).unwrap();
    }
    let f64_npy = s(&dir.join("f64.npy"));
    {
        use npyz::WriterBuilder;
        let mut f = std::fs::File::create(&f64_npy).unwrap();
        let mut w = npyz::WriteOptions::<f64>::new().default_dtype().shape(&[1, 1, 8, 8]).writer(&mut f).begin_nd().unwrap();
        w.extend(std::iter::repeat_n(0.0f64, 64)).unwrap();
        w.finish().unwrap();
    }
    let garbage_npy = s(&dir.join("garbage.npy"));
    std::fs::write(&garbage_npy, b"\x93NUMPY\x01\x00garbage").unwrap();
    let noise_fifo = mkfifo(&dir.join("noise_fifo.npy"));
    for (file, needle) in [
        (&nan, "NaN"),
        (&inf, "NaN or infinite"),
        (&wrong, "wrong.npy"),
        (&rank2, "rank2.npy"),
        (&empty_n, "empty_n.npy"),
        (&liar, "liar.npy"),
        (&f64_npy, "float32"),
        (&garbage_npy, "garbage.npy"),
        (&noise_fifo, "noise_fifo.npy"),
        (&s(&dir.join("absent.npy")), "absent.npy"),
    ] {
        with_model(&good, &["--noise", file], needle);
    }
    let one_noise = noise("one_noise.npy", &[0.5; 64], &[1, 1, 8, 8]);
    with_model(&good, &["--noise", &one_noise, "--n", "4"], "--n 4");

    // eval: sets and extractors.
    let set = |name: &str, data: Vec<f32>, shape: &[usize]| {
        let p = dir.join(name);
        write_npy(&p, &data, shape).unwrap();
        s(&p)
    };
    let a = set("a.npy", (0..4 * 64).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect(), &[4, 1, 8, 8]);
    let b = set("b.npy", (0..4 * 64).map(|i| (i % 13) as f32 / 13.0 - 0.5).collect(), &[4, 1, 8, 8]);
    let one = set("one.npy", vec![0.0; 64], &[1, 1, 8, 8]);
    // [0, 255] pixels where [-1, 1] is expected.
    let pixels = set("pixels.npy", (0..4 * 64).map(|i| (i % 256) as f32).collect(), &[4, 1, 8, 8]);
    let nan_set = set("nan_set.npy", vec![f32::NAN; 4 * 64], &[4, 1, 8, 8]);
    let big_set = set("big.npy", vec![0.1; 2 * 224 * 224], &[2, 1, 224, 224]);
    let big_set2 = set("big2.npy", (0..2 * 224 * 224).map(|i| (i % 5) as f32 / 5.0).collect(), &[2, 1, 224, 224]);
    let extractor = |name: &str, side: i64, nodes: Vec<NodeProto>, inits: Vec<TensorProto>, out_shape: &[Option<usize>]| {
        write_model(
            &dir.join(name),
            Graph {
                inputs: vec![vi("images", DataType::Float, &dims(&[-1, 1, side, side]))],
                outputs: vec![vi("features", DataType::Float, out_shape)],
                nodes,
                inits,
                meta: vec![],
            },
        )
    };
    let nan_features = extractor(
        "nan_features.onnx",
        8,
        vec![node("Mul", &["images", "k"], &["m"], vec![]), node("Flatten", &["m"], &["features"], vec![])],
        vec![floats("k", &[], &[f32::NAN])],
        &[None, Some(64)],
    );
    let scalar_features = extractor(
        "scalar_features.onnx",
        8,
        vec![node("ReduceSum", &["images"], &["features"], vec![attr_int("keepdims", 0)])],
        vec![],
        &[],
    );
    let wide_features =
        extractor("wide_features.onnx", 224, vec![node("Flatten", &["images"], &["features"], vec![])], vec![], &[None, Some(50176)]);
    let ev = |extra: &[&str], needle: &str| {
        let mut args = vec!["eval"];
        args.extend_from_slice(extra);
        case("runtime", &args, needle)
    };
    let corrupt_idx = s(&dir.join("t10k-images-idx3-ubyte"));
    std::fs::write(&corrupt_idx, idx_bytes(1000, 28, 28, 100)).unwrap();
    let huge_idx = s(&dir.join("huge-images-idx3-ubyte"));
    std::fs::write(&huge_idx, idx_bytes(u32::MAX, u32::MAX, u32::MAX, 16)).unwrap();
    let png_dir = dir.join("pngs");
    std::fs::create_dir_all(&png_dir).unwrap();
    std::fs::write(png_dir.join("000.png"), b"\x89PNG\r\n\x1a\nbroken").unwrap();
    let real_fifo = mkfifo(&dir.join("real_fifo.npy"));
    for (extra, needle) in [
        (vec!["--samples", &nan_set, "--real", &a, "--extractor", &nan_features], "NaN"),
        (vec!["--samples", &a, "--real", &b, "--extractor", &nan_features], "nan_features.onnx"),
        (vec!["--samples", &a, "--real", &b, "--extractor", &scalar_features], "scalar_features.onnx"),
        (vec!["--samples", &big_set, "--real", &big_set2, "--extractor", &wide_features], "50176 features"),
        (vec!["--samples", &one, "--real", &a, "--extractor", &nan_features], "one.npy"),
        (vec!["--samples", &a, "--real", &b, "--extractor", &nan_features, "--n", "99"], "--n 99"),
        (vec!["--samples", &a, "--real", &b, "--extractor", &garbage], "garbage.onnx"),
        (vec!["--samples", &a, "--real", &b, "--extractor", &fifo], "fifo.onnx"),
        (vec!["--samples", &a, "--real", &corrupt_idx, "--extractor", &nan_features], "t10k-images-idx3-ubyte"),
        (vec!["--samples", &a, "--real", &huge_idx, "--extractor", &nan_features], "huge-images-idx3-ubyte"),
        (vec!["--samples", &a, "--real", &s(&png_dir), "--extractor", &nan_features], "000.png"),
        (vec!["--samples", &a, "--real", &real_fifo, "--extractor", &nan_features], "real_fifo.npy"),
        (vec!["--samples", &liar, "--real", &a], "liar.npy"),
        (vec!["--samples", "/dev/zero", "--real", &a], "/dev/zero"),
        (vec!["--samples", &s(&dir.join("nothing.npy")), "--real", &a], "nothing.npy"),
        (vec!["--samples", &a, "--real", &pixels, "--extractor", &nan_features], "pixels.npy: values from 0 to 255"),
    ] {
        cases.push(ev(&extra, needle));
    }
    for (model, extra, needle) in &specs {
        for o in [&out, &ex] {
            let mut args = vec!["--model", model.as_str(), "--steps", "3", "--out", o.as_str()];
            args.extend(extra.iter().map(String::as_str));
            cases.push(sample(&args, needle).keep(&existing).keep(Path::new(&out)));
        }
    }
    let n = check_all(cases);
    eprintln!("runtime: {n} hostile cases held the contract");
    assert!(n >= 100, "{n} cases");
}

#[test]
fn exporter_holds_the_contract_against_hostile_input() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // A real tiny checkpoint to damage in copies.
    let config = ddpm_models::UNetConfig::from_json_str(TINY, "tiny").unwrap();
    let weights = ddpm_models::random_weights(&config, 1).unwrap();
    let base = dir.join("base");
    ddpm_models::UNetCheckpoint::save(&base.join("unet"), &config, &weights).unwrap();
    std::fs::create_dir_all(base.join("scheduler")).unwrap();
    std::fs::write(base.join("scheduler/scheduler_config.json"), SCHED).unwrap();
    let existing = dir.join("existing.onnx");
    std::fs::write(&existing, b"an existing model the exporter must not damage").unwrap();
    let mut n_ckpt = 0;
    let mut variant = |edit: &dyn Fn(&Path)| -> String {
        n_ckpt += 1;
        let c = dir.join(format!("ckpt{n_ckpt}"));
        copy_dir(&base, &c);
        edit(&c);
        s(&c)
    };
    let mut cases = Vec::new();
    let ex = s(&existing);
    let new_out = s(&dir.join("new.onnx"));
    let mut export = |ckpt: &str, extra: &[&str], needle: &str| {
        for o in [&ex, &new_out] {
            let mut args = vec!["onnx", "--ckpt", ckpt, "--out", o.as_str()];
            args.extend_from_slice(extra);
            cases.push(case("exporter", &args, needle).keep(&existing).keep(Path::new(&new_out)));
        }
    };
    let set_config = |key: &'static str, value: &'static str| {
        move |c: &Path| {
            let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.join("unet/config.json")).unwrap()).unwrap();
            v[key] = serde_json::from_str(value).unwrap();
            std::fs::write(c.join("unet/config.json"), v.to_string()).unwrap();
        }
    };
    for (key, value) in [
        ("norm_eps", "-1"),
        ("norm_eps", "0"),
        ("layers_per_block", "1000000000"),
        ("block_out_channels", "[1000000, 1000000]"),
        ("sample_size", "100000"),
        ("in_channels", "0"),
        ("num_class_embeds", "1000000000000"),
        ("dropout", "2.0"),
        ("attention_head_dim", "0"),
        ("norm_num_groups", "0"),
        ("downsample_padding", "7"),
        ("mid_block_scale_factor", "-3"),
        ("time_embedding_dim", "0"),
        ("cross_attention_dim", "768"),
        ("down_block_types", "[\"CrossAttnDownBlock2D\", \"DownBlock2D\"]"),
    ] {
        let c = variant(&set_config(key, value));
        export(&c, &[], key);
    }
    let c = variant(&|c: &Path| std::fs::write(c.join("unet/config.json"), "{\"sample_size\": ").unwrap());
    export(&c, &[], "config.json");
    let c = variant(&|c: &Path| {
        std::fs::remove_file(c.join("unet/config.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", c.join("unet/config.json")).unwrap();
    });
    export(&c, &[], "config.json");
    let c = variant(&|c: &Path| {
        std::fs::remove_file(c.join("unet/config.json")).unwrap();
        mkfifo(&c.join("unet/config.json"));
    });
    export(&c, &[], "config.json");
    // Weights: missing, truncated, garbage header, NaN, wrong shape, pickled only.
    let wfile = "unet/diffusion_pytorch_model.safetensors";
    let c = variant(&|c: &Path| std::fs::remove_file(c.join(wfile)).unwrap());
    export(&c, &[], "safetensors");
    let c = variant(&|c: &Path| {
        let b = std::fs::read(c.join(wfile)).unwrap();
        std::fs::write(c.join(wfile), &b[..b.len() / 2]).unwrap();
    });
    export(&c, &[], "safetensors");
    let c = variant(&|c: &Path| {
        let mut b = vec![];
        b.extend(u64::MAX.to_le_bytes());
        b.extend(b"{}");
        std::fs::write(c.join(wfile), b).unwrap();
    });
    export(&c, &[], "safetensors");
    let c = variant(&|c: &Path| {
        let mut w = ddpm_models::weights::read_safetensors(&c.join(wfile)).unwrap();
        w.get_mut("conv_in.weight").unwrap().data[0] = f32::NAN;
        ddpm_models::weights::write_safetensors(&c.join(wfile), &w).unwrap();
    });
    export(&c, &[], "conv_in.weight");
    let c = variant(&|c: &Path| {
        let mut w = ddpm_models::weights::read_safetensors(&c.join(wfile)).unwrap();
        let t = w.get_mut("conv_out.bias").unwrap();
        t.shape = vec![2];
        t.data = vec![0.0; 2];
        ddpm_models::weights::write_safetensors(&c.join(wfile), &w).unwrap();
    });
    export(&c, &[], "conv_out.bias");
    let c = variant(&|c: &Path| {
        std::fs::rename(c.join(wfile), c.join("unet/diffusion_pytorch_model.bin")).unwrap();
    });
    export(&c, &[], "diffusion_pytorch_model.bin");
    // The scheduler config beside it.
    for (text, needle) in [
        ("{not json", "scheduler_config.json"),
        (r#"{"beta_end": 2.0}"#, "beta_end"),
        (r#"{"num_train_timesteps": 0}"#, "num_train_timesteps"),
        (r#"{"clip_sample_range": -1}"#, "clip_sample_range"),
        (r#"{"num_train_timesteps": 1000000000}"#, "num_train_timesteps"),
        (r#"{"prediction_type": "noise"}"#, "prediction_type"),
    ] {
        let text = text.to_string();
        let c = variant(&move |c: &Path| std::fs::write(c.join("scheduler/scheduler_config.json"), &text).unwrap());
        export(&c, &[], needle);
    }
    let c = variant(&|c: &Path| {
        std::fs::remove_file(c.join("scheduler/scheduler_config.json")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", c.join("scheduler/scheduler_config.json")).unwrap();
    });
    export(&c, &[], "scheduler_config.json");
    // A config whose norm_eps makes the network compute NaN is never "verified".
    let nan_eps = variant(&|c: &Path| {
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(c.join("unet/config.json")).unwrap()).unwrap();
        v["norm_eps"] = serde_json::json!(1e-300);
        std::fs::write(c.join("unet/config.json"), v.to_string()).unwrap();
        let mut w = ddpm_models::weights::read_safetensors(&c.join(wfile)).unwrap();
        for t in w.values_mut() {
            t.data.iter_mut().for_each(|x| *x = 0.0);
        }
        ddpm_models::weights::write_safetensors(&c.join(wfile), &w).unwrap();
    });
    export(&nan_eps, &[], "NaN");
    // Paths: missing, a file, --out over its own inputs, flags.
    export(&s(&dir.join("no_such_ckpt")), &[], "no_such_ckpt");
    export(&ex, &[], "existing.onnx");
    let b = s(&base);
    let own = [
        s(&base.join(wfile)),
        s(&base.join("unet/config.json")),
        s(&base.join("scheduler/scheduler_config.json")),
        s(&base.join("unet/../unet/model.onnx")),
    ];
    for o in &own {
        cases.push(case("exporter", &["onnx", "--ckpt", &b, "--out", o], "own").keep(&base));
    }
    cases.push(case("exporter", &["fp16-unet", "--ckpt", &s(&base.join("unet")), "--out", &s(&base.join("unet"))], "own").keep(&base));
    cases.push(case("exporter", &["onnx", "--ckpt", &b, "--out", &s(&dir.join("no/dir/m.onnx"))], "no/dir").keep(&base));
    cases.push(case("exporter", &["onnx", "--ckpt", &b, "--out", &new_out, "--opset", "99"], "opset").keep(Path::new(&new_out)));
    cases.push(case("exporter", &["onnx", "--ckpt", &b, "--out", &s(dir)], "folder").keep(&base));
    let n = check_all(cases);
    eprintln!("exporter: {n} hostile cases held the contract");
}

#[test]
fn trainer_holds_the_contract_against_hostile_input() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let data = write_idx_pair(&dir.join("data"), 16);
    let data_s = s(&data);
    let cfg = dir.join("tiny.json");
    std::fs::write(&cfg, TINY).unwrap();
    let cfg_s = s(&cfg);
    // A real run to damage in copies: 4 steps, checkpoints at 2 and 4.
    let base = dir.join("base_run");
    let o = Command::new(bin("trainer"))
        .args(["fit", "--data", &data_s, "--out", &s(&base), "--config", &cfg_s, "--steps", "4", "--batch-size", "4"])
        .args(["--save-every", "2", "--sample-every", "0", "--threads", "1"])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut cases = Vec::new();
    let fresh = dir.join("fresh");
    let fresh_s = s(&fresh);
    let fit = |extra: &[&str], needle: &str| {
        let mut args = vec!["fit", "--data", data_s.as_str(), "--out", fresh_s.as_str(), "--config", cfg_s.as_str()];
        for (flag, value) in [("--steps", "2"), ("--batch-size", "2"), ("--threads", "1"), ("--sample-every", "0")] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        args.extend_from_slice(extra);
        // Nothing may be written for a refused start.
        case("trainer", &args, needle).keep(&fresh)
    };
    for (extra, needle) in [
        (vec!["--lr", "inf"], "--lr"),
        (vec!["--lr", "NaN"], "--lr"),
        (vec!["--lr", "0"], "--lr"),
        (vec!["--lr", "-1"], "--lr"),
        (vec!["--weight-decay", "NaN"], "--weight-decay"),
        (vec!["--weight-decay", "-1"], "--weight-decay"),
        (vec!["--grad-clip", "NaN"], "--grad-clip"),
        (vec!["--grad-clip", "-inf"], "--grad-clip"),
        (vec!["--ema-decay", "1.5"], "--ema-decay"),
        (vec!["--ema-decay", "NaN"], "--ema-decay"),
        (vec!["--batch-size", "0"], "--batch-size"),
        (vec!["--batch-size", "1000000000"], "--batch-size"),
        (vec!["--steps", "0"], "--steps"),
        (vec!["--save-every", "0"], "--save-every"),
        (vec!["--threads", "100000"], "--threads"),
        (vec!["--threads", "0"], "--threads"),
        (vec!["--threads", "-3"], "--threads"),
        (vec!["--sample-every", "1", "--preview-steps", "0"], "--preview-steps"),
        (vec!["--sample-every", "1", "--preview-steps", "5000"], "--preview-steps"),
        (vec!["--max-memory", "1K"], "limit"),
        (vec!["--device", "tpu"], "tpu"),
        (vec!["--scheduler-config", "/dev/zero"], "/dev/zero"),
        (vec!["--bogus"], "--bogus"),
    ] {
        cases.push(fit(&extra, needle));
    }
    for (name, text, needle) in [
        ("beta_end", r#"{"beta_end": 2.0}"#, "beta_end"),
        ("t0", r#"{"num_train_timesteps": 0}"#, "num_train_timesteps"),
        ("junk", "{{{{", "junk.json"),
        ("unknown", r#"{"warp": 9}"#, "warp"),
    ] {
        let p = dir.join(format!("{name}.json"));
        std::fs::write(&p, text).unwrap();
        cases.push(fit(&["--scheduler-config", &s(&p)], needle));
    }
    let sched_fifo = mkfifo(&dir.join("sched_fifo.json"));
    cases.push(fit(&["--scheduler-config", &sched_fifo], "sched_fifo.json"));
    // Network configs.
    for (key, value) in [
        ("norm_eps", "-1"),
        ("layers_per_block", "1000000000"),
        ("block_out_channels", "[1000000, 1000000]"),
        ("sample_size", "0"),
        ("dropout", "NaN"),
        ("num_class_embeds", "0"),
    ] {
        let c = tiny_with(dir, &format!("cfg_{key}"), key, if value == "NaN" { "null" } else { value });
        if value == "NaN" {
            std::fs::write(&c, TINY.replace("\"dropout\": 0.1", "\"dropout\": NaN")).unwrap();
        }
        let mut args = vec!["fit", "--data", data_s.as_str(), "--out", fresh_s.as_str(), "--config", c.as_str(), "--steps", "2"];
        args.push("--threads");
        args.push("1");
        cases.push(case("trainer", &args, if value == "NaN" { "cfg_dropout.json" } else { key }).keep(&fresh));
    }
    // Data.
    let empty_dir = dir.join("empty");
    std::fs::create_dir_all(&empty_dir).unwrap();
    let corrupt = dir.join("corrupt-images-idx3-ubyte");
    std::fs::write(&corrupt, idx_bytes(9, 8, 8, 3)).unwrap();
    let huge = dir.join("huge-images-idx3-ubyte");
    std::fs::write(&huge, idx_bytes(u32::MAX, 60000, 60000, 16)).unwrap();
    let data_fifo = mkfifo(&dir.join("fifo-images-idx3-ubyte"));
    // A folder whose only "image" is a FIFO, and one that links back to itself.
    let fifo_folder = dir.join("fifo_folder/class_a");
    std::fs::create_dir_all(&fifo_folder).unwrap();
    mkfifo(&fifo_folder.join("a.png"));
    let loop_folder = dir.join("loop_folder");
    std::fs::create_dir_all(loop_folder.join("sub")).unwrap();
    std::os::unix::fs::symlink(&loop_folder, loop_folder.join("sub/back")).unwrap();
    for p in [dir.join("fifo_folder"), loop_folder.clone()] {
        let p = s(&p);
        let args = vec!["fit", "--data", p.as_str(), "--out", fresh_s.as_str(), "--config", cfg_s.as_str(), "--threads", "1"];
        cases.push(case("trainer", &args, "no usable image").keep(&fresh));
    }
    for (p, needle) in [
        (s(&empty_dir), "empty"),
        (s(&corrupt), "corrupt-images-idx3-ubyte"),
        (s(&huge), "huge-images-idx3-ubyte"),
        (data_fifo, "fifo-images-idx3-ubyte"),
        ("/no/such/data".into(), "/no/such/data"),
    ] {
        let args = vec!["fit", "--data", p.as_str(), "--out", fresh_s.as_str(), "--config", cfg_s.as_str(), "--threads", "1"];
        cases.push(case("trainer", &args, needle).keep(&fresh));
    }
    // Run folders: damaged in copies, each checked to stay as it was.
    let mut n_run = 0;
    let mut damaged = |edit: &dyn Fn(&Path)| -> PathBuf {
        n_run += 1;
        let r = dir.join(format!("run{n_run}"));
        copy_dir(&base, &r);
        edit(&r);
        r
    };
    let resume = |run: &Path, needle: &str| {
        let r = s(run);
        case("trainer", &["fit", "--data", &data_s, "--out", &r, "--resume"], needle).keep(run)
    };
    // A hyper-parameter another than the run's own, named as the command line spells it.
    let bs = s(&base);
    for (flag, value, needle) in [
        ("--loss", "vlb", "--loss vlb: the run in"),
        ("--batch-size", "8", "--batch-size 8: the run in"),
        ("--timestep-sampling", "importance", "started with uniform"),
    ] {
        cases.push(case("trainer", &["fit", "--data", &data_s, "--out", &bs, "--resume", flag, value], needle).keep(&base));
    }
    let outside = dir.join("elsewhere");
    copy_dir(&base.join("train_state"), &outside);
    let r = damaged(&|r: &Path| std::fs::write(r.join("train_state/LATEST"), "../../elsewhere").unwrap());
    cases.push(resume(&r, "LATEST"));
    let r = damaged(&|r: &Path| std::fs::write(r.join("train_state/LATEST"), "step-00000099").unwrap());
    cases.push(resume(&r, "step-00000099"));
    let r = damaged(&|r: &Path| std::fs::remove_file(r.join("train_state/LATEST")).unwrap());
    cases.push(resume(&r, "LATEST"));
    // Without --resume, a run whose LATEST is gone is still a run: not overwritten.
    let rs = s(&r);
    cases.push(case("trainer", &["fit", "--data", &data_s, "--out", &rs, "--config", &cfg_s, "--threads", "1"], "--resume").keep(&r));
    let r = damaged(&|r: &Path| {
        let latest = std::fs::read_to_string(r.join("train_state/LATEST")).unwrap();
        std::fs::write(r.join("train_state").join(latest.trim()).join("state.json"), "{corrupt").unwrap();
    });
    cases.push(resume(&r, "state.json"));
    let r = damaged(&|r: &Path| {
        let latest = std::fs::read_to_string(r.join("train_state/LATEST")).unwrap();
        std::fs::write(r.join("train_state").join(latest.trim()).join("loss.csv"), "step,loss,lr\n1,0.5,1e-4\ngarbage here\n").unwrap();
    });
    cases.push(resume(&r, "loss.csv"));
    let r = damaged(&|r: &Path| {
        let latest = std::fs::read_to_string(r.join("train_state/LATEST")).unwrap();
        std::fs::remove_file(r.join("train_state").join(latest.trim()).join("adam_v.safetensors")).unwrap();
    });
    cases.push(resume(&r, "adam_v.safetensors"));
    let r = damaged(&|r: &Path| {
        let latest = std::fs::read_to_string(r.join("train_state/LATEST")).unwrap();
        std::fs::write(r.join("train_state").join(latest.trim()).join("params.safetensors"), b"junk").unwrap();
    });
    cases.push(resume(&r, "params.safetensors"));
    let r = damaged(&|r: &Path| std::fs::write(r.join("unet/config.json"), "{").unwrap());
    cases.push(resume(&r, "config.json"));
    let r = damaged(&|_| {});
    let rs2 = s(&r);
    cases.push(case("trainer", &["fit", "--data", &data_s, "--out", &rs2, "--resume", "--lr", "0.5"], "--lr").keep(&r));
    cases.push(case("trainer", &["fit", "--data", &data_s, "--out", &rs2, "--resume", "--steps", "1"], "--steps").keep(&r));
    cases.push(case("trainer", &["fit", "--data", &data_s, "--out", &rs2, "--resume", "--preset", "digits"], "preset").keep(&r));
    cases.push(case("trainer", &["fit", "--data", &data_s, "--out", &fresh_s, "--resume"], "no run").keep(&fresh));
    cases.push(case("trainer", &["fit", "--data", &data_s, "--out", &rs2, "--config", &cfg_s], "--resume").keep(&r));
    let n = check_all(cases);
    eprintln!("trainer: {n} hostile cases held the contract");
}
