//! Serving through a real Triton Inference Server (issue 16): `exporter triton` writes a
//! repository whose config.pbtxt Triton's own schema parses, a `tritonserver` (PyPI's
//! CPU-only build, the Triton environment of `make test`) serves it on free ports of
//! 127.0.0.1 through the Python backend, and `runtime sample --server` drives it: the
//! same samples as local sampling (to 1e-5), the same bytes whatever the concurrency, and
//! each failure (no server, unknown model, a server stopped mid-chain) told apart, on one
//! line, with no output left behind. No server process outlives a test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binaries sit next to this test's folder (cargo builds them for their own packages'
/// tests in `cargo test --workspace`).
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().and_then(Path::parent).unwrap().join(name);
    assert!(p.is_file(), "{} is not built: run the workspace's tests (make test)", p.display());
    p
}

/// The Triton environment (`scripts/setup-env.sh --triton`), which `make test` names.
fn triton_env() -> PathBuf {
    let v = std::env::var_os("DDPM_RS_TRITON_ENV")
        .expect("DDPM_RS_TRITON_ENV is not set: run these tests through `make test` (it sets up the Triton environment)");
    PathBuf::from(v)
}

fn site_packages() -> PathBuf {
    let lib = triton_env().join("lib");
    let py = std::fs::read_dir(&lib).unwrap().flatten().find(|e| e.file_name().to_string_lossy().starts_with("python3")).unwrap();
    py.path().join("site-packages")
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/onnx/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn digits() -> String {
    format!("{}/../models/pretrained/digits/digits.onnx", env!("CARGO_MANIFEST_DIR"))
}

fn run(tool: &str, args: &[&str]) -> Output {
    Command::new(bin(tool)).args(args).env("RUST_LOG", "warn").env_remove("RUST_BACKTRACE").output().unwrap()
}

fn ok(tool: &str, args: &[&str]) -> String {
    let out = run(tool, args);
    assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit `code`, one line on stderr containing every needle, no panic.
fn fails(out: &Output, code: i32, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got {stderr}");
    for n in needles {
        assert!(lines[0].contains(n), "{:?} does not mention {n:?}", lines[0]);
    }
    stderr
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `tritonserver` on free ports, in its own process group; dropped: the group is killed
/// and waited for.
struct Server {
    child: Child,
    grpc: u16,
    log: PathBuf,
}

/// The server's HTTP, gRPC and metrics ports.
type Ports = (u16, u16, u16);

fn free_ports() -> Ports {
    (free_port(), free_port(), free_port())
}

impl Server {
    /// A server as the README starts it (PYTHONPATH naming the environment's site-packages).
    fn start(repo: &Path, log_dir: &Path) -> Self {
        Self::launch(repo, log_dir, free_ports(), true, true)
    }

    /// A server on `ports`; `wait`: return once it is ready. Without PYTHONPATH: the Python
    /// backend's model finds numpy and onnxruntime beside the tritonserver it runs under.
    fn start_on(repo: &Path, log_dir: &Path, ports: Ports, wait: bool) -> Self {
        Self::launch(repo, log_dir, ports, wait, false)
    }

    fn launch(repo: &Path, log_dir: &Path, (http, grpc, metrics): Ports, wait: bool, pythonpath: bool) -> Self {
        let tritonserver = site_packages().join("pytriton/tritonserver");
        let log = log_dir.join(format!("tritonserver-{grpc}-{}.log", Instant::now().elapsed().as_nanos() ^ u128::from(std::process::id())));
        let mut cmd = Command::new(tritonserver.join("bin/tritonserver"));
        cmd.args(["--model-repository", &repo.to_string_lossy()])
            .args(["--backend-directory", &tritonserver.join("backends").to_string_lossy()])
            .args(["--http-port", &http.to_string(), "--grpc-port", &grpc.to_string(), "--metrics-port", &metrics.to_string()])
            .args(["--http-address", "127.0.0.1", "--grpc-address", "127.0.0.1", "--allow-metrics", "false"])
            .env_remove("PYTHONPATH")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap());
        if pythonpath {
            cmd.env("PYTHONPATH", site_packages());
        }
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        let child = cmd.spawn().unwrap();
        let mut server = Self { child, grpc, log };
        if wait {
            server.wait_ready(http);
        }
        server
    }

    /// Polls GET /v2/health/ready until it answers 200 (2 minutes at most).
    fn wait_ready(&mut self, http: u16) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("tritonserver exited ({status}): {}", self.logs());
            }
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", http)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.write_all(b"GET /v2/health/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "tritonserver not ready after 2 minutes: {}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.grpc)
    }

    fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!("{}\n{}", read(&self.log), read(&self.log.with_extension("err")))
    }

    /// Kills the server's whole process group (the server and its Python stubs).
    fn stop(&mut self) {
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on a process group this test created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn repository(dir: &Path, models: &[(&str, &str)]) -> PathBuf {
    let repo = dir.join("repo");
    for (onnx, name) in models {
        ok(
            "exporter",
            &["triton", "--onnx", onnx, "--repo", &repo.to_string_lossy(), "--name", name, "--backend", "python", "--threads", "1"],
        );
    }
    repo
}

fn read(path: &Path) -> Vec<f32> {
    ddpm_io::npy::read_npy(path).unwrap().0
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Parses config.pbtxt with protobuf's own text-format parser into Triton's ModelConfig
/// (tritonclient's compiled model_config descriptors) and prints facts of it as JSON.
fn parse_with_triton_schema(config: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from google.protobuf import text_format, json_format
from tritonclient.grpc import model_config_pb2
c = text_format.Parse(open(sys.argv[1]).read(), model_config_pb2.ModelConfig())
print(json.dumps(json_format.MessageToDict(c, preserving_proto_field_name=True)))
"#;
    let out = Command::new(triton_env().join("bin/python")).arg("-c").arg(script).arg(config).output().unwrap();
    assert!(out.status.success(), "{}: {}", config.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn exporter_writes_repositories_that_tritons_schema_parses() {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    let r = repo.to_string_lossy().into_owned();
    let model = digits();
    ok("exporter", &["triton", "--onnx", &model, "--repo", &r, "--name", "py", "--backend", "python", "--max-batch-size", "32"]);
    ok(
        "exporter",
        &[
            "triton",
            "--onnx",
            &model,
            "--repo",
            &r,
            "--name",
            "trt",
            "--instance-kind",
            "gpu",
            "--instance-count",
            "2",
            "--preferred-batch-size",
            "16",
            "--preferred-batch-size",
            "32",
            "--max-queue-delay-us",
            "500",
            "--tensorrt",
            "fp16",
            "--trt-workspace-mib",
            "2048",
            "--trt-engine-cache",
            "/var/cache/trt",
        ],
    );
    let metadata = |key: &str| {
        // The .onnx metadata, as the runtime reads it.
        let m = ddpm_runtime::OnnxDenoiser::builder().intra_threads(1).from_file(&model).unwrap();
        let sig = m.signature().clone();
        match key {
            "num_class_embeds" => sig.unet_config.unwrap()["num_class_embeds"].clone(),
            _ => unreachable!(),
        }
    };
    let py = parse_with_triton_schema(&repo.join("py/config.pbtxt"));
    assert_eq!(py["backend"], "python");
    assert_eq!(py["max_batch_size"], 32);
    assert_eq!(py["instance_group"][0]["kind"], "KIND_CPU");
    assert_eq!(py["input"][0]["name"], "sample");
    assert_eq!(py["input"][0]["dims"], serde_json::json!(["1", "28", "28"]));
    assert_eq!(py["input"][1]["name"], "timestep");
    assert!(py["input"][1].get("reshape").is_some(), "timestep [B] travels as [B, 1] reshaped to [B]");
    assert_eq!(py["output"][0]["name"], "noise_pred");
    let unet: serde_json::Value = serde_json::from_str(py["parameters"]["unet_config"]["string_value"].as_str().unwrap()).unwrap();
    assert_eq!(unet["num_class_embeds"], metadata("num_class_embeds"));
    let sched: serde_json::Value = serde_json::from_str(py["parameters"]["scheduler_config"]["string_value"].as_str().unwrap()).unwrap();
    assert_eq!(sched["num_train_timesteps"], 1000);
    assert!(repo.join("py/1/model.onnx").is_file() && repo.join("py/1/model.py").is_file());
    assert_eq!(std::fs::read(repo.join("py/1/model.onnx")).unwrap(), std::fs::read(&model).unwrap());

    let trt = parse_with_triton_schema(&repo.join("trt/config.pbtxt"));
    assert_eq!(trt["backend"], "onnxruntime");
    assert_eq!(trt["platform"], "onnxruntime_onnx");
    assert_eq!(trt["instance_group"][0], serde_json::json!({"kind": "KIND_GPU", "count": 2}));
    assert_eq!(trt["dynamic_batching"]["preferred_batch_size"], serde_json::json!([16, 32]));
    assert_eq!(trt["dynamic_batching"]["max_queue_delay_microseconds"], "500");
    let acc = &trt["optimization"]["execution_accelerators"]["gpu_execution_accelerator"][0];
    assert_eq!(acc["name"], "tensorrt");
    assert_eq!(acc["parameters"]["precision_mode"], "FP16");
    assert_eq!(acc["parameters"]["max_workspace_size_bytes"], (2048u64 << 20).to_string());
    assert_eq!(acc["parameters"]["trt_engine_cache_path"], "/var/cache/trt");
    assert!(!repo.join("trt/1/model.py").exists());

    // Bad input: exit 2, one line naming what is wrong; nothing half-written.
    let not_onnx = d.path().join("x.onnx");
    std::fs::write(&not_onnx, b"not a model").unwrap();
    let n = not_onnx.to_string_lossy().into_owned();
    let float_t = fixture("gaussian_float_t.onnx");
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--onnx", "/nonexistent.onnx"], &["/nonexistent.onnx"]),
        (&["--onnx", &n], &["x.onnx", "ONNX"]),
        (&["--onnx", &float_t], &["gaussian_float_t.onnx"]),
        (&["--onnx", &model, "--max-batch-size", "0"], &["--max-batch-size"]),
        (&["--onnx", &model, "--preferred-batch-size", "128"], &["--preferred-batch-size 128"]),
        (&["--onnx", &model, "--backend", "python", "--tensorrt", "fp16"], &["--tensorrt"]),
    ];
    for (args, needles) in cases {
        let all: Vec<&str> = ["triton", "--repo", &r, "--name", "bad"].iter().copied().chain(args.iter().copied()).collect();
        fails(&run("exporter", &all), 2, needles);
        assert!(!repo.join("bad").exists(), "{args:?} left a model folder");
    }
    let leftovers: Vec<_> = std::fs::read_dir(&repo).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

/// A copy of the model folder `name` as `new`, its config.pbtxt edited by `edit`.
fn edited_model(repo: &Path, name: &str, new: &str, edit: impl Fn(String) -> String) {
    let (from, to) = (repo.join(name), repo.join(new));
    std::fs::create_dir_all(to.join("1")).unwrap();
    for f in ["1/model.onnx", "1/model.py"] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
    let text =
        std::fs::read_to_string(from.join("config.pbtxt")).unwrap().replace(&format!("name: \"{name}\""), &format!("name: \"{new}\""));
    std::fs::write(to.join("config.pbtxt"), edit(text)).unwrap();
}

#[test]
fn remote_sampling_equals_local_sampling() {
    let d = tempfile::tempdir().unwrap();
    let repo = repository(d.path(), &[(&fixture("gaussian_classes.onnx"), "gaussian_classes"), (&digits(), "digits")]);
    // Served models that do not fit the contract: a float16 sample, a sample of rank 3, no
    // scheduler config among the parameters.
    edited_model(&repo, "gaussian_classes", "fp16_sample", |t| t.replacen("TYPE_FP32", "TYPE_FP16", 1));
    edited_model(&repo, "gaussian_classes", "rank3_sample", |t| t.replacen("dims: [1, 8, 8]", "dims: [8, 8]", 1));
    edited_model(&repo, "gaussian_classes", "no_schedule", |t| t.replacen("key: \"scheduler_config\"", "key: \"other\"", 1));
    let server = Server::start(&repo, d.path());
    let url = server.url();
    let out = |name: &str| d.path().join(name).to_string_lossy().into_owned();
    // The full DDPM chain and DDIM on the analytic class-conditional model, and DDIM on
    // the digits U-Net; uniform labels and a fixed one.
    let cases: [(&str, &[&str]); 5] = [
        ("gaussian_classes", &["--sampler", "ddpm", "--n", "6", "--batch-size", "4"]),
        ("gaussian_classes", &["--sampler", "ddim", "--steps", "20", "--n", "5", "--class-label", "2"]),
        ("gaussian_classes", &["--sampler", "dpm-solver++", "--steps", "15", "--n", "3"]),
        ("digits", &["--sampler", "ddim", "--steps", "8", "--n", "3", "--class-label", "7"]),
        ("digits", &["--sampler", "ddpm", "--steps", "8", "--n", "2"]),
    ];
    for (i, (name, flags)) in cases.iter().enumerate() {
        let local_model = if *name == "digits" { digits() } else { fixture("gaussian_classes.onnx") };
        let (remote, local) = (out(&format!("remote-{i}.npy")), out(&format!("local-{i}.npy")));
        let seed = ["--seed", "21"];
        let said = ok("runtime", &[&["sample", "--server", &url, "--model-name", name, "--out", &remote][..], flags, &seed].concat());
        assert!(said.contains("served by") && said.contains("requests"), "{said}");
        ok("runtime", &[&["sample", "--model", &local_model, "--threads", "1", "--out", &local][..], flags, &seed].concat());
        let diff = max_diff(&read(Path::new(&remote)), &read(Path::new(&local)));
        assert!(diff <= 1e-5, "{name} {flags:?}: remote and local differ by {diff}");
    }

    // K batches in flight: the same bytes as one at a time.
    let mut files = Vec::new();
    for k in ["1", "4"] {
        let f = out(&format!("conc-{k}.npy"));
        let flags = ["--sampler", "ddim", "--steps", "25", "--n", "10", "--batch-size", "2", "--seed", "5", "--concurrency", k];
        let said = ok("runtime", &[&["sample", "--server", &url, "--model-name", "gaussian_classes", "--out", &f][..], &flags].concat());
        assert!(said.contains(&format!("{k} in flight")), "{said}");
        files.push(std::fs::read(&f).unwrap());
    }
    assert_eq!(files[0], files[1], "--concurrency 1 and 4 differ");

    // An unknown model: exit 2, naming the server and the model.
    let missing = out("missing.npy");
    let e =
        fails(&run("runtime", &["sample", "--server", &url, "--model-name", "nosuch", "--out", &missing]), 2, &["nosuch", "unknown model"]);
    assert!(e.contains(&url), "{e}");
    assert!(!Path::new(&missing).exists());
    for (name, needle) in [("fp16_sample", "sample"), ("rank3_sample", "rank 3"), ("no_schedule", "scheduler_config")] {
        let out = run("runtime", &["sample", "--server", &url, "--model-name", name, "--out", &missing]);
        fails(&out, 2, &[name, "does not fit the contract", needle]);
    }
    // A batch larger than the model's max_batch_size (64).
    fails(
        &run("runtime", &["sample", "--server", &url, "--model-name", "digits", "--batch-size", "65", "--out", &missing]),
        2,
        &["max_batch_size"],
    );
    // A guidance scale on a model without a null label.
    fails(
        &run("runtime", &["sample", "--server", &url, "--model-name", "gaussian_classes", "--guidance-scale", "3", "--out", &missing]),
        2,
        &["null label"],
    );
    // A class label outside the model's classes.
    fails(
        &run("runtime", &["sample", "--server", &url, "--model-name", "digits", "--class-label", "12", "--out", &missing]),
        2,
        &["class label 12"],
    );
    assert!(!Path::new(&missing).exists());
}

#[test]
fn a_server_that_is_not_there_or_stops_mid_chain_is_a_clear_failure() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("x.npy").to_string_lossy().into_owned();
    // Nothing listens: exit 1, after the retries, naming the server.
    let url = format!("grpc://127.0.0.1:{}", free_port());
    let t0 = Instant::now();
    fails(&run("runtime", &["sample", "--server", &url, "--model-name", "digits", "--out", &out]), 1, &[&url, "unreachable"]);
    assert!(t0.elapsed() < Duration::from_secs(60));
    // A URL of a protocol this client does not speak, and one that is no URL: exit 2.
    fails(&run("runtime", &["sample", "--server", "http://127.0.0.1:8000", "--model-name", "digits", "--out", &out]), 2, &["grpc://"]);
    fails(&run("runtime", &["sample", "--server", "127.0.0.1", "--model-name", "digits", "--out", &out]), 2, &["grpc://HOST:PORT"]);

    // A server killed while a chain runs: exit 1 once the retries are spent, and no output.
    let repo = repository(d.path(), &[(&digits(), "digits")]);
    let mut server = Server::start(&repo, d.path());
    let url = server.url();
    let child = Command::new(bin("runtime"))
        .args(["sample", "--server", &url, "--model-name", "digits", "--sampler", "ddpm", "--n", "4", "--out", &out])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    server.stop();
    let result = child.wait_with_output().unwrap();
    fails(&result, 1, &[&url, "digits"]);
    assert!(!Path::new(&out).exists(), "a partial output was written");
    let leftovers: Vec<_> =
        std::fs::read_dir(d.path()).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().contains("x.npy")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn transient_failures_are_retried_and_change_no_byte() {
    let d = tempfile::tempdir().unwrap();
    let repo = repository(d.path(), &[(&fixture("gaussian_classes.onnx"), "gaussian_classes")]);
    let ports = free_ports();
    let url = format!("grpc://127.0.0.1:{}", ports.1);
    let out = |name: &str| d.path().join(name).to_string_lossy().into_owned();
    let flags = ["--model-name", "gaussian_classes", "--sampler", "ddpm", "--n", "3", "--seed", "8", "--retries", "12"];
    let sample = |file: &str| {
        Command::new(bin("runtime"))
            .args(["sample", "--server", &url, "--out", file])
            .args(flags)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // 1. The client starts before the server: its connection attempts are retried until
    //    the server is up.
    let early = sample(&out("early.npy"));
    std::thread::sleep(Duration::from_millis(500));
    let mut server = Server::start_on(&repo, d.path(), ports, true);
    let r = early.wait_with_output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    // 2. The server is killed and started again while a chain runs: the requests that
    //    failed are sent again, and the chain ends as an uninterrupted one.
    let restarted = sample(&out("restarted.npy"));
    std::thread::sleep(Duration::from_millis(700));
    server.stop();
    let _again = Server::start_on(&repo, d.path(), ports, false);
    let r = restarted.wait_with_output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let plain = out("plain.npy");
    ok("runtime", &[&["sample", "--server", &url, "--out", &plain][..], &flags].concat());
    let plain = std::fs::read(&plain).unwrap();
    assert_eq!(std::fs::read(out("early.npy")).unwrap(), plain);
    assert_eq!(std::fs::read(out("restarted.npy")).unwrap(), plain);
}
