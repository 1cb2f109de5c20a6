//! A small blocking HTTP/1.1 client over `std::net`: what talking to an
//! OpenAI-compatible server on a cluster needs (JSON POSTs and GETs,
//! keep-alive, `Content-Length` or chunked bodies, timeouts), and nothing else.
//!
//! Why not ureq or reqwest: each pulls `bytes`, `url` or `once_cell` with
//! other features than burn's, and cargo's feature unification then rebuilds
//! the whole model runtime (about an hour on two cores). `https://` goes
//! through rustls (ring) with the Mozilla roots of `webpki-roots`, plus the
//! certificates of the PEM file `SSL_CERT_FILE` names, when set (a cluster's
//! own CA, as OpenSSL and Python read that variable).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// An answer: status, headers (names lowercased) and body text.
#[derive(Debug)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Why no answer came.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http[s]://host[:port]/path`.
    #[error("`{0}` is not an http:// or https:// URL")]
    Url(String),
    /// TLS could not be set up or the server's certificate was refused.
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting, sending or reading failed (refused, reset, closed).
    #[error("{0}")]
    Io(String),
    /// No byte within the timeout.
    #[error("timeout")]
    Timeout,
    /// The server's answer is not HTTP.
    #[error("malformed HTTP response: {0}")]
    Protocol(String),
}

/// `http[s]://host:port/path` split into its address and path.
#[derive(Debug, PartialEq)]
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn split_url(url: &str) -> Result<Target, HttpError> {
    let (tls, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(HttpError::Url(url.into())),
    };
    let (authority, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let default_port = if tls { 443 } else { 80 };
    // `[::1]:8000`: brackets around an IPv6 address, the port after them.
    let (host, port) = match authority.strip_prefix('[').and_then(|a| a.split_once(']')) {
        Some((h, "")) => (h, default_port),
        Some((h, p)) => (h, p.strip_prefix(':').and_then(|p| p.parse().ok()).ok_or_else(|| HttpError::Url(url.into()))?),
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| HttpError::Url(url.into()))?),
            None => (authority, default_port),
        },
    };
    if host.is_empty() {
        return Err(HttpError::Url(url.into()));
    }
    Ok(Target { tls, host: host.to_string(), port, path })
}

/// The TLS settings, built once: Mozilla's roots and `SSL_CERT_FILE`'s.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, HttpError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(file) = std::env::var_os("SSL_CERT_FILE") {
                let shown = std::path::Path::new(&file).display().to_string();
                let certs = CertificateDer::pem_file_iter(&file)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("SSL_CERT_FILE `{shown}`: {e}"))?;
                if certs.is_empty() {
                    return Err(format!("SSL_CERT_FILE `{shown}` holds no PEM certificate"));
                }
                for c in certs {
                    roots.add(c).map_err(|e| format!("SSL_CERT_FILE `{shown}`: {e}"))?;
                }
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
        .map_err(HttpError::Tls)
}

/// A connection: plain TCP or TLS over it.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// Connections kept open between requests, by `host:port`.
pub struct Http {
    timeout: Duration,
    idle: Mutex<Vec<(String, Conn)>>,
}

impl Http {
    /// A client whose every connect, write and read waits at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Http { timeout, idle: Mutex::new(Vec::new()) }
    }

    /// Sends one request (`body` with a JSON content type when given).
    pub fn request(&self, method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Result<Response, HttpError> {
        let t = split_url(url)?;
        let authority = if t.host.contains(':') { format!("[{}]:{}", t.host, t.port) } else { format!("{}:{}", t.host, t.port) };
        let key = format!("{}://{authority}", if t.tls { "https" } else { "http" });
        let mut head = format!("{method} {} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\n", t.path);
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        if let Some(b) = body {
            head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
        }
        head += "\r\n";
        // A kept-alive connection the server has since closed fails at
        // once; then the request goes again on a fresh one.
        if let Some(mut stream) = self.take_idle(&key) {
            match self.exchange(&mut stream, &head, body) {
                Ok((resp, reusable)) => {
                    self.keep(key, stream, reusable);
                    return Ok(resp);
                }
                Err(HttpError::Timeout) => return Err(HttpError::Timeout),
                Err(_) => {}
            }
        }
        let mut stream = self.connect(&t)?;
        let (resp, reusable) = self.exchange(&mut stream, &head, body)?;
        self.keep(key, stream, reusable);
        Ok(resp)
    }

    fn take_idle(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().expect("pool lock");
        let i = idle.iter().position(|(k, _)| k == key)?;
        Some(idle.swap_remove(i).1)
    }

    fn keep(&self, key: String, stream: Conn, reusable: bool) {
        if reusable {
            self.idle.lock().expect("pool lock").push((key, stream));
        }
    }

    fn connect(&self, t: &Target) -> Result<Conn, HttpError> {
        let tcp = self.connect_tcp(t)?;
        if !t.tls {
            return Ok(Conn::Plain(tcp));
        }
        let name = ServerName::try_from(t.host.clone()).map_err(|e| HttpError::Tls(format!("`{}` is not a server name: {e}", t.host)))?;
        let conn = rustls::ClientConnection::new(tls_config()?, name).map_err(|e| HttpError::Tls(e.to_string()))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // The handshake now, so that a refused certificate says so.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).map_err(|e| match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => HttpError::Timeout,
                _ => HttpError::Tls(format!("handshake with {}:{}: {e}", t.host, t.port)),
            })?;
        }
        Ok(Conn::Tls(Box::new(stream)))
    }

    fn connect_tcp(&self, t: &Target) -> Result<TcpStream, HttpError> {
        let addrs = (t.host.as_str(), t.port).to_socket_addrs().map_err(|e| HttpError::Io(format!("cannot resolve {}: {e}", t.host)))?;
        let mut last = HttpError::Io(format!("no address for {}", t.host));
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(self.timeout)).map_err(io)?;
                    s.set_write_timeout(Some(self.timeout)).map_err(io)?;
                    s.set_nodelay(true).map_err(io)?;
                    return Ok(s);
                }
                Err(e) => last = io(e),
            }
        }
        Err(last)
    }

    /// Writes the request and reads the whole answer; also says whether
    /// the connection may carry another request.
    fn exchange(&self, stream: &mut Conn, head: &str, body: Option<&[u8]>) -> Result<(Response, bool), HttpError> {
        let mut out = Vec::with_capacity(head.len() + body.map_or(0, <[u8]>::len));
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.unwrap_or_default());
        stream.write_all(&out).map_err(io)?;
        stream.flush().map_err(io)?;
        let mut r = BufReader::new(stream);
        let status_line = read_line(&mut r)?;
        if status_line.is_empty() {
            return Err(HttpError::Io("connection closed before an answer".into()));
        }
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| HttpError::Protocol(format!("status line `{status_line}`")))?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut r)?;
            if line.is_empty() {
                break;
            }
            let (k, v) = line.split_once(':').ok_or_else(|| HttpError::Protocol(format!("header `{line}`")))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let resp = Response { status, headers, body: String::new() };
        let chunked = resp.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = resp.header("content-length").and_then(|v| v.parse::<usize>().ok());
        let mut reusable = !resp.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let bytes = if chunked {
            read_chunked(&mut r)?
        } else if let Some(n) = length {
            let mut b = vec![0; n];
            r.read_exact(&mut b).map_err(io)?;
            b
        } else {
            reusable = false;
            let mut b = Vec::new();
            r.read_to_end(&mut b).map_err(io)?;
            b
        };
        let body = String::from_utf8(bytes).map_err(|_| HttpError::Protocol("body is not UTF-8".into()))?;
        Ok((Response { body, ..resp }, reusable))
    }
}

fn io(e: std::io::Error) -> HttpError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => HttpError::Timeout,
        _ => HttpError::Io(e.to_string()),
    }
}

/// One line without its `\r\n` (empty at the end of the headers or EOF).
fn read_line(r: &mut impl BufRead) -> Result<String, HttpError> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(io)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_chunked(r: &mut impl BufRead) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| HttpError::Protocol(format!("chunk size `{line}`")))?;
        if size == 0 {
            // Trailers, then the blank line.
            while !read_line(r)?.is_empty() {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).map_err(io)?;
        read_line(r)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_split_into_address_and_path() {
        let t = split_url("http://gpu-1:8000/v1/models").unwrap();
        assert_eq!(t, Target { tls: false, host: "gpu-1".into(), port: 8000, path: "/v1/models".into() });
        let t = split_url("https://api.example.com/v1").unwrap();
        assert_eq!(t, Target { tls: true, host: "api.example.com".into(), port: 443, path: "/v1".into() });
        let t = split_url("http://[::1]:8080/v1").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        assert_eq!(split_url("https://[::1]/v1").unwrap().port, 443);
        assert!(split_url("http://[::1]x/v1").is_err());
        assert_eq!(split_url("http://h").unwrap().port, 80);
        assert!(split_url("ftp://h/v1").is_err());
        assert!(split_url("http://:80/").is_err());
    }

    /// A server that answers each connection's requests with `answers` in turn.
    fn serve(answers: Vec<&'static str>) -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            for a in answers {
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut b = vec![0; len];
                r.read_exact(&mut b).unwrap();
                (&s).write_all(a.as_bytes()).unwrap();
            }
        });
        format!("http://{addr}/v1")
    }

    #[test]
    fn keep_alive_carries_sized_and_chunked_bodies() {
        let url = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n",
        ]);
        let http = Http::new(Duration::from_secs(5));
        let a = http.request("POST", &url, &[("Authorization", "Bearer k")], Some(b"{}")).unwrap();
        assert_eq!((a.status, a.body.as_str()), (200, "ok"));
        let b = http.request("GET", &url, &[], None).unwrap();
        assert_eq!((b.status, b.body.as_str(), b.header("retry-after")), (429, "abcde", Some("3")));
    }

    #[test]
    fn a_refused_connection_and_a_silent_server_are_errors() {
        let http = Http::new(Duration::from_millis(300));
        assert!(matches!(http.request("GET", "http://127.0.0.1:9/", &[], None), Err(HttpError::Io(_))));
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        assert!(matches!(http.request("GET", &url, &[], None), Err(HttpError::Timeout)));
        drop(l);
    }
}
