//! A minimal HTTP/1.1 client over a unix socket. The testkit needs it to see when a daemon's
//! API is up (`GET /_ping`), and tests use it to check raw protocol details (headers, status
//! codes) that the docker CLI hides. Deliberately tiny instead of a hyper client: one request
//! per connection, `Connection: close`, no TLS.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A complete HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Headers in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, with chunked transfer encoding already removed.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossily decoded as UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request to the HTTP server on the unix socket `socket` and reads the whole
/// response. `body`, if any, is sent as `application/json`. `timeout` bounds connecting and
/// each read and write, so a hung server yields an error instead of a hung test.
pub fn unix_http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;

    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: swarmd\r\nUser-Agent: swarmd-testkit\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut writer = &stream;
    writer.write_all(request.as_bytes())?;
    if let Some(body) = body {
        writer.write_all(body)?;
    }

    let mut reader = BufReader::new(&stream);
    let status_line = read_line(&mut reader)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad_data(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(&mut reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad_data(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut response = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };

    let no_body = method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304;
    if no_body {
        return Ok(response);
    }
    let chunked = response
        .header("Transfer-Encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let size_line = read_line(&mut reader)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| bad_data(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the final empty line.
                while !read_line(&mut reader)?.is_empty() {}
                break;
            }
            let start = response.body.len();
            response.body.resize(start + size, 0);
            reader.read_exact(&mut response.body[start..])?;
            read_line(&mut reader)?; // CRLF after the chunk
        }
    } else if let Some(len) = response.header("Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad_data(format!("bad Content-Length {len:?}")))?;
        response.body.resize(len, 0);
        reader.read_exact(&mut response.body)?;
    } else {
        reader.read_to_end(&mut response.body)?;
    }
    Ok(response)
}

/// One CRLF- (or LF-) terminated line without its terminator; EOF mid-response is an error.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        ));
    }
    while line.ends_with(['\r', '\n']) {
        line.pop();
    }
    Ok(line)
}

fn bad_data(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::thread;

    /// Serves one connection with a canned response and returns the request it received.
    fn serve_once(response: &'static [u8]) -> (tempfile::TempDir, thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("s.sock")).unwrap();
        let handle = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                request.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            if let Some(len) = request
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
            {
                let mut body = vec![0; len.trim().parse().unwrap()];
                reader.read_exact(&mut body).unwrap();
                request.push_str(&String::from_utf8(body).unwrap());
            }
            (&stream).write_all(response).unwrap();
            request
        });
        (dir, handle)
    }

    #[test]
    fn reads_a_content_length_response() {
        let (dir, server) =
            serve_once(b"HTTP/1.1 200 OK\r\nApi-Version: 1.50\r\nContent-Length: 2\r\n\r\nOK");
        let resp = unix_http(
            &dir.path().join("s.sock"),
            "GET",
            "/_ping",
            None,
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("api-version"), Some("1.50"));
        assert_eq!(resp.text(), "OK");
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /_ping HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("Connection: close\r\n"), "{request}");
    }

    #[test]
    fn decodes_chunked_bodies_and_sends_json() {
        let (dir, server) = serve_once(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"me\r\nc;x=y\r\nssage\":\"no\"}\r\n0\r\n\r\n",
        );
        let resp = unix_http(
            &dir.path().join("s.sock"),
            "POST",
            "/v1.50/services/create",
            Some(br#"{"Name":"x"}"#),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(resp.status, 404);
        assert_eq!(resp.text(), r#"{"message":"no"}"#);
        let request = server.join().unwrap();
        assert!(
            request.contains("Content-Type: application/json\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\n{\"Name\":\"x\"}"), "{request}");
    }

    #[test]
    fn fails_cleanly_without_a_server() {
        let dir = tempfile::tempdir().unwrap();
        let err = unix_http(
            &dir.path().join("none.sock"),
            "GET",
            "/_ping",
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
