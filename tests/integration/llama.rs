//! A real OpenAI-compatible server for the `openai:` tests: llama.cpp's
//! llama-server from the `xllamacpp` wheel (scripts/setup-llama-server.sh)
//! serving SmolLM2-135M on 127.0.0.1, and a fault-injecting proxy to put in
//! front of it for what a real server will not do on demand.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use retort_stages::openai::http::Http;

/// The model's name on the server (its alias).
pub const MODEL: &str = "smollm2";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's python, installing the wheel once; `Err` says why not.
fn python() -> Result<PathBuf, String> {
    static ONCE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ONCE.get_or_init(|| {
        let gguf = repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !gguf.exists() {
            return Err("models/SmolLM2-135M-Instruct.Q4_1.gguf is missing (scripts/fetch-smollm2.sh)".into());
        }
        let out = Command::new(repo().join("scripts/setup-llama-server.sh")).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("the xllamacpp wheel cannot be installed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let venv = std::env::var_os("RETORT_LLAMA_VENV").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv-llama"));
        Ok(venv.join("bin/python"))
    })
    .clone()
}

/// A free port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running llama-server; stopped on drop.
pub struct Server {
    child: Option<Child>,
    /// The GGUF it serves.
    model: PathBuf,
    pub port: u16,
    slots: usize,
    key: Option<String>,
}

/// A server with `slots` parallel slots, or `None` (printing why) when the
/// wheel cannot be installed here.
pub fn server(slots: usize, key: Option<&str>) -> Option<Server> {
    if let Err(why) = python() {
        eprintln!("skipping: {why}");
        return None;
    }
    let model = repo().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut s = Server { child: None, model, port: free_port(), slots, key: key.map(str::to_string) };
    s.start();
    Some(s)
}

/// A server of another GGUF file (one slot, no key), or `None` (printing
/// why) when the wheel cannot be installed here.
pub fn server_of(model: &Path) -> Option<Server> {
    if let Err(why) = python() {
        eprintln!("skipping: {why}");
        return None;
    }
    let mut s = Server { child: None, model: model.to_path_buf(), port: free_port(), slots: 1, key: None };
    s.start();
    Some(s)
}

impl Server {
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// (Re)starts the server on its port and waits until it answers.
    pub fn start(&mut self) {
        let mut cmd = Command::new(python().unwrap());
        cmd.arg(repo().join("scripts/llama-server.py"))
            .arg(&self.model)
            .arg(self.port.to_string())
            .arg(self.slots.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(k) = &self.key {
            cmd.env("LLAMA_API_KEY", k);
        }
        self.child = Some(cmd.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if health(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("llama-server did not start on port {}", self.port);
    }

    /// Kills the server (SIGKILL: it once ignored SIGTERM, see SCALEOUT.md).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn health(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.ends_with(b"200")
}

/// What the proxy does with the next POST.
#[derive(Clone, Debug)]
pub enum Fault {
    /// 429 with `Retry-After: SECS`.
    TooMany(u32),
    /// 500 with a message.
    Internal,
    /// Says nothing for this long, then drops the connection.
    Stall(Duration),
    /// Drops the connection at once.
    Reset,
}

/// A proxy in front of a server: POSTs take the next queued fault, or pass
/// through (and are counted when the server answers 200).
pub struct Proxy {
    pub port: u16,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// When set, every POST fails with this (a server that stays broken).
    always: Arc<Mutex<Option<Fault>>>,
    passed: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn new(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let p = Proxy { port, faults: Arc::default(), always: Arc::default(), passed: Arc::default() };
        let (faults, always, passed) = (p.faults.clone(), p.always.clone(), p.passed.clone());
        std::thread::spawn(move || {
            let http = Arc::new(Http::new(Duration::from_secs(60)));
            for conn in listener.incoming().flatten() {
                let (faults, always, passed, http) = (faults.clone(), always.clone(), passed.clone(), http.clone());
                std::thread::spawn(move || serve(conn, upstream, &faults, &always, &passed, &http));
            }
        });
        p
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    pub fn push(&self, faults: &[Fault]) {
        self.faults.lock().unwrap().extend(faults.iter().cloned());
    }

    pub fn always(&self, fault: Option<Fault>) {
        *self.always.lock().unwrap() = fault;
    }

    /// POSTs the server answered with 200.
    pub fn passed(&self) -> usize {
        self.passed.load(Ordering::SeqCst)
    }

    pub fn faults_left(&self) -> usize {
        self.faults.lock().unwrap().len()
    }
}

fn serve(conn: TcpStream, upstream: u16, faults: &Mutex<VecDeque<Fault>>, always: &Mutex<Option<Fault>>, passed: &AtomicUsize, http: &Http) {
    let mut r = BufReader::new(conn.try_clone().unwrap());
    let mut w = conn;
    loop {
        let Some((method, path, auth, body)) = read_request(&mut r) else { return };
        let fault = if method == "POST" { always.lock().unwrap().clone().or_else(|| faults.lock().unwrap().pop_front()) } else { None };
        let (status, text, extra) = match fault {
            Some(Fault::TooMany(secs)) => (429, r#"{"error":{"message":"slow down"}}"#.to_string(), format!("Retry-After: {secs}\r\n")),
            Some(Fault::Internal) => (500, r#"{"error":{"message":"injected failure"}}"#.to_string(), String::new()),
            Some(Fault::Stall(d)) => {
                std::thread::sleep(d);
                return;
            }
            Some(Fault::Reset) => return,
            None => {
                let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
                let url = format!("http://127.0.0.1:{upstream}{path}");
                match http.request(&method, &url, &headers, (method == "POST").then_some(body.as_slice())) {
                    Ok(resp) => {
                        if method == "POST" && resp.status == 200 {
                            passed.fetch_add(1, Ordering::SeqCst);
                        }
                        (resp.status, resp.body, String::new())
                    }
                    Err(e) => (502, format!(r#"{{"error":{{"message":"proxy: {e}"}}}}"#), String::new()),
                }
            }
        };
        let head = format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n", text.len());
        if w.write_all(head.as_bytes()).and_then(|_| w.write_all(text.as_bytes())).is_err() {
            return;
        }
    }
}

/// (method, path, Authorization, body) of the next request on a connection.
fn read_request(r: &mut impl BufRead) -> Option<(String, String, Option<String>, Vec<u8>)> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let (mut len, mut auth) = (0, None);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "content-length" => len = v.trim().parse().ok()?,
            "authorization" => auth = Some(v.trim().to_string()),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, path, auth, body))
}

/// stunnel terminating TLS on a free port in front of `backend` (a real
/// TLS server, as nginx or Caddy would be in front of vLLM), its
/// certificate for `localhost` and 127.0.0.1 signed by a fresh private CA;
/// stopped on drop. `None` (printing why) without `stunnel` or `openssl`
/// (`.ci/run` installs stunnel4).
pub struct Tls {
    child: Child,
    pub port: u16,
    /// The CA's certificate (PEM), for `SSL_CERT_FILE`.
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

/// `openssl ARGS...` in `dir`, quietly; whether it succeeded.
fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl").current_dir(dir).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

pub fn tls_terminator(backend: u16) -> Option<Tls> {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("leaf.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let made = openssl(d, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=retort test CA", "-keyout", "ca.key", "-out", "ca.pem"])
        && openssl(d, &["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr"])
        && openssl(d, &["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "leaf.ext", "-out", "cert.pem"]);
    if !made {
        eprintln!("skipping: `openssl` cannot make the test certificates");
        return None;
    }
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    let port = free_port();
    let conf = dir.path().join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[openai]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend}\ncert = {}\nkey = {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let child = match Command::new("stunnel").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping: `stunnel` cannot start ({e}); apt-get install stunnel4");
            return None;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "stunnel did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Tls { child, port, ca: d.join("ca.pem"), _dir: dir })
}

impl Drop for Tls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
