//! A SoftHSM2 token with RSA-2048, P-256 and P-384 keys (non-extractable), a test CA, client
//! certificates for the token keys, `openssl s_server` peers, the `pkcs11_probe` child and the
//! `pkcs11_session_reaper` module.
//! Everything lives in a temp dir; `SOFTHSM2_CONF` is set only on child processes.
#![allow(dead_code)] // shared by the test and the benchmark, which use different parts

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user PIN; distinctive, so the tests can check it is never printed.
pub const PIN: &str = "nexus-pin-4711";
/// The token label.
pub const TOKEN: &str = "nexus";
/// OpenSC's logging PKCS#11 wrapper.
pub const SPY: &str = "/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so";

/// A key on the test token.
#[derive(Clone, Copy, Debug)]
pub struct TestKey {
    /// `CKA_ID` as hex.
    pub id: &'static str,
    /// `CKA_LABEL`.
    pub label: &'static str,
    /// pkcs11-tool's `--key-type`.
    pub key_type: &'static str,
}

/// The three token keys.
pub const KEYS: [TestKey; 3] = [
    TestKey {
        id: "01",
        label: "rsakey",
        key_type: "rsa:2048",
    },
    TestKey {
        id: "02",
        label: "eckey",
        key_type: "EC:prime256v1",
    },
    TestKey {
        id: "03",
        label: "ec384key",
        key_type: "EC:secp384r1",
    },
];

/// The token, the CA and the certificates of one test.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub module: PathBuf,
    pub conf: PathBuf,
    pub pin_file: PathBuf,
}

impl Pki {
    /// Creates the token, its keys, the CA, a server certificate and a client certificate per key.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_owned();
        std::fs::create_dir(root.join("tokens")).unwrap();
        let conf = root.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                root.display()
            ),
        )
        .unwrap();
        let pin_file = root.join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        let pki = Pki {
            module: softhsm_module(),
            conf,
            pin_file,
            dir,
        };
        pki.run(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--so-pin",
                "12345678",
                "--pin",
                PIN,
            ],
        );
        for key in KEYS {
            pki.pkcs11_tool(&[
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                key.key_type,
                "--id",
                key.id,
                "--label",
                key.label,
                "--usage-sign",
            ]);
        }
        // The CA, then a server certificate it issues (both EC P-256, valid two days).
        let ca = [
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ];
        pki.new_certificate("ca", "/CN=Nexus Test CA", &ca);
        pki.new_certificate(
            "server",
            "/CN=localhost",
            &["-CA", "ca.crt", "-CAkey", "ca.key"],
        );
        std::fs::write(
            root.join("client.ext"),
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        for key in KEYS {
            // pkcs11-tool 0.23 cannot export P-384 public keys; the probe reads them via nexus.
            let (pem, crt) = (format!("{}.pub.pem", key.id), format!("{}.crt", key.id));
            let uri = format!("pkcs11:token={TOKEN};id=%{};type=private", key.id);
            let result = pki.probe(&["pubkey", "--key", &uri, "--out", &pem]);
            assert_eq!(result["ok"], true, "public key of {}: {result}", key.label);
            let subject = format!("/CN=client-{}", key.label);
            pki.issue(&pem, &subject, "client.ext", &crt);
        }
        pki
    }

    /// `openssl req -x509` with a new P-256 key: `<name>.key` and `<name>.crt`, valid two days,
    /// self-signed unless `extra` names a CA.
    fn new_certificate(&self, name: &str, subject: &str, extra: &[&str]) {
        let (key, cert) = (format!("{name}.key"), format!("{name}.crt"));
        let mut args = vec![
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        args.extend([
            "-keyout", &key, "-out", &cert, "-days", "2", "-subj", subject,
        ]);
        args.extend_from_slice(extra);
        self.run("openssl", &args);
    }

    /// Issues `out`, a server certificate (CN=localhost, SAN localhost and 127.0.0.1,
    /// serverAuth) from the test CA for the public key in `public_pem` (files in the test dir).
    pub fn server_cert(&self, public_pem: &str, out: &str) {
        std::fs::write(
            self.path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        self.issue(public_pem, "/CN=localhost", "server.ext", out);
    }

    /// Issues `out` for the public key in `public_pem` with `subject` and the extensions file
    /// `ext`, signed by the test CA (files in the test dir).
    pub fn issue(&self, public_pem: &str, subject: &str, ext: &str, out: &str) {
        let request = ["-new", "-subj", subject, "-force_pubkey", public_pem];
        self.ca_signs(&request, &["-extfile", ext], out);
    }

    /// The test CA issues `out` for the certificate request `csr`, with the extensions the
    /// request asks for (files in the test dir).
    pub fn issue_request(&self, csr: &str, out: &str) {
        self.ca_signs(&["-req", "-in", csr], &["-copy_extensions", "copy"], out);
    }

    /// `openssl x509 <input> -CA ca.crt ... <extensions> -out <out>`, valid two days.
    fn ca_signs(&self, input: &[&str], extensions: &[&str], out: &str) {
        let ca = ["-CA", "ca.crt", "-CAkey", "ca.key", "-days", "2"];
        let args: Vec<&str> = ["x509"]
            .iter()
            .chain(input)
            .chain(&ca)
            .chain(extensions)
            .chain(&["-out", out])
            .copied()
            .collect();
        self.run("openssl", &args);
    }

    /// `nexus pkcs11 <args>` run in the test directory with this token's `SOFTHSM2_CONF`.
    pub fn nexus_pkcs11(&self, args: &[&str]) -> Command {
        let mut command = self.command(env!("CARGO_BIN_EXE_nexus"));
        command.arg("pkcs11").args(args);
        command
    }

    /// A path in the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The client certificate (PEM) of `key`.
    pub fn cert(&self, key: TestKey) -> String {
        self.path(&format!("{}.crt", key.id)).display().to_string()
    }

    /// A command run in the test directory with this token's `SOFTHSM2_CONF`.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.dir.path())
            .env("SOFTHSM2_CONF", &self.conf);
        command
    }

    /// Runs a setup command; panics with its output on failure.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `pkcs11-tool` on the test token.
    pub fn pkcs11_tool(&self, args: &[&str]) -> String {
        let module = self.module.display().to_string();
        let mut all = vec!["--module", &module, "--token-label", TOKEN];
        all.extend_from_slice(args);
        self.run("pkcs11-tool", &all)
    }

    /// Runs the probe with `args` (module and PIN file added) and returns its JSON.
    pub fn probe(&self, args: &[&str]) -> serde_json::Value {
        self.probe_with(self.command(probe_program()), args, &self.module)
    }

    /// Runs the probe through pkcs11-spy, logging PKCS#11 calls to `log`.
    pub fn probe_spied(&self, log: &Path, args: &[&str]) -> serde_json::Value {
        let mut command = self.command(probe_program());
        command
            .env("PKCS11SPY", &self.module)
            .env("PKCS11SPY_OUTPUT", log);
        self.probe_with(command, args, Path::new(SPY))
    }

    fn probe_with(&self, mut command: Command, args: &[&str], module: &Path) -> serde_json::Value {
        let pin_file = self.pin_file.display().to_string();
        let module = module.display().to_string();
        command
            .args(args)
            .args(["--module", &module, "--pin-file", &pin_file]);
        let output = command.output().expect("run pkcs11_probe");
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
            panic!(
                "pkcs11_probe {args:?}: status {}\nstdout: {stdout}\nstderr: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    /// Starts `openssl s_server` requiring a client certificate from the test CA.
    pub fn s_server(&self, tls: &str) -> SServer {
        let port = free_port();
        let accept = format!("127.0.0.1:{port}");
        let version = if tls == "1.2" { "-tls1_2" } else { "-tls1_3" };
        let child = self
            .command("openssl")
            .args([
                "s_server",
                "-accept",
                &accept,
                "-cert",
                "server.crt",
                "-key",
                "server.key",
                "-CAfile",
                "ca.crt",
                "-Verify",
                "1",
                "-verify_return_error",
                version,
                "-www",
                "-quiet",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        let server = SServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        // s_server gives no readiness signal: wait until it accepts connections.
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "s_server did not start on {accept}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

/// A running `openssl s_server`, stopped on drop.
pub struct SServer {
    child: Child,
    /// Its loopback port.
    pub port: u16,
}

impl SServer {
    /// The port as a string, for the probe's `--port`.
    pub fn port(&self) -> String {
        self.port.to_string()
    }
}

impl Drop for SServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

/// `pkcs11:` URI of a key's private half on the test token (PIN given separately).
pub fn private_uri(key: TestKey) -> String {
    format!("pkcs11:token={TOKEN};object={};type=private", key.label)
}

/// The probe's arguments for mutual-TLS handshakes: `key` is the option and value naming the
/// client key (`--key URI` or `--key-pem FILE`), `extra` follows the fixed part.
pub fn handshake_args(
    key: [&str; 2],
    cert: &str,
    port: &str,
    tls: &str,
    extra: &[&str],
) -> Vec<String> {
    let fixed = [
        "handshake",
        key[0],
        key[1],
        "--cert",
        cert,
        "--ca",
        "ca.crt",
        "--port",
        port,
        "--tls",
        tls,
    ];
    fixed
        .iter()
        .chain(extra)
        .map(|arg| arg.to_string())
        .collect()
}

/// The mechanism of every operation started (`C_SignInit`, and any other `C_*Init`) in a
/// pkcs11-spy log. Read line by line: the spy writes concurrent calls' lines interleaved, so a
/// call's block may be cut by another call's lines.
pub fn mechanisms_used(spy: &str) -> Vec<String> {
    spy.lines()
        .filter_map(|line| line.trim().strip_prefix("[in] pMechanism->type = "))
        .map(|name| name.trim().to_owned())
        .collect()
}

/// The SoftHSM2 module, wherever the distribution put it.
pub fn softhsm_module() -> PathBuf {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib64/pkcs11/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists())
    .expect("SoftHSM2 is not installed (apt-get install softhsm2 opensc; tests/run does it)")
}

/// The `pkcs11_probe` example program.
pub fn probe_program() -> PathBuf {
    example("pkcs11_probe")
}

/// The `pkcs11_session_reaper` example, a PKCS#11 module.
pub fn session_reaper_module() -> PathBuf {
    example("libpkcs11_session_reaper.so")
}

/// `cargo test`/`cargo bench` build examples next to the binaries' `deps` directory.
fn example(file: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    let path = profile.join("examples").join(file);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --examples` (tests/run does)",
        path.display()
    );
    path
}
